"""A loopback stand-in for the jobs contract (POST/GET /xray/jobs and S3's presigned POST), for
the batch command's own logic: resume, retries, the CSV, auth headers. It checks what S3 would
(the file part last, every policy field sent, a Content-Length, the declared size) and can be
told to fail in the ways the client must survive. A succeeded DICOM job's status URL answers
Accept: application/dicom with an SR (made by highdicom in tests/support/stow.py, not ours), and
POST /pacs/studies stands in for a DICOMweb server's STOW-RS. The real stack is
tests/client/test_e2e.py; a real PACS, tests/client/test_stow.py."""
import contextlib
import hashlib
import http.server
import json
import secrets
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

CONTENT_TYPES = ("image/png", "image/jpeg", "application/dicom")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIDFAKEBATCH", "AWS_SECRET_ACCESS_KEY": "fake-secret",
               "AWS_SESSION_TOKEN": "fake-session-token"}
REGION = "eu-west-1"


def fake_result(data: bytes) -> Dict[str, Any]:
    """What the fake classifier answers for these bytes: findings that depend on them."""
    first = hashlib.sha256(data).digest()[0] / 255
    findings = [{"label": "Nodule", "probability": round(0.5 + first / 2, 6), "threshold": 0.5},
                {"label": "Effusion", "probability": round(first / 2, 6), "threshold": 0.5}]
    kind = "dicom" if data[128:132] == b"DICM" else "png"
    return {"model": {"name": "fake-model", "version": "7"}, "findings": findings,
            "positive": ["Nodule"], "image": {"format": kind}}


def fake_report(data: bytes) -> Optional[bytes]:
    """The SR of a job's upload, None when it is no readable DICOM (the fake's 406)."""
    from tests.support.stow import sr_of
    try:
        return sr_of(data)
    except Exception:
        return None


def fake_stow(body: bytes, content_type: str) -> Tuple[int, Dict[str, Any]]:
    """A DICOMweb server that stores every application/dicom part: its Store Instances
    Response Module, naming each part's SOP Instance UID."""
    import io

    import pydicom

    from tests.support.stow import parts_of
    referenced = []
    for kind, data in parts_of(body, content_type):
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        assert kind == "application/dicom", kind
        referenced.append({"00081150": {"vr": "UI", "Value": [str(ds.SOPClassUID)]},
                           "00081155": {"vr": "UI", "Value": [str(ds.SOPInstanceUID)]}})
    return 200, {"00081190": {"vr": "UR"}, "00081199": {"vr": "SQ", "Value": referenced}}


@dataclass
class Job:
    content_type: str
    size: int
    data: Optional[bytes] = None
    polls: int = 0


@dataclass
class FakeApi:
    url: str = ""
    jobs: Dict[str, Job] = field(default_factory=dict)
    creates: List[Tuple[str, int]] = field(default_factory=list)       # (type, size) accepted
    uploads: List[bytes] = field(default_factory=list)
    upload_headers: List[Dict[str, str]] = field(default_factory=list)
    api_headers: List[Dict[str, str]] = field(default_factory=list)
    reports: List[Tuple[str, bytes]] = field(default_factory=list)  # (job id, SR) fetched
    stow_requests: List[Tuple[Dict[str, str], bytes]] = field(default_factory=list)
    polls: int = 0
    problems: List[str] = field(default_factory=list)   # what S3 or API Gateway would refuse
    max_bytes: int = 10_000
    polls_before_final: int = 2
    finishing: bool = True                  # False: every job stays "running"
    # failures to inject, per kind ("create", "upload", "poll", "report", "stow"): how many,
    # and how
    drops: Dict[str, int] = field(default_factory=dict)            # connection closed
    unavailable: Dict[str, int] = field(default_factory=dict)      # 503 + Retry-After: 0
    classify: Callable[[bytes], Tuple[str, Dict[str, Any]]] = \
        lambda data: (("failed", {"error": {"Code": "InvalidImage",
                                            "Message": "truncated PNG"}})
                      if data.startswith(b"BAD") else ("succeeded", {"result": fake_result(data)}))
    report: Callable[[bytes], Optional[bytes]] = fake_report
    stow: Callable[[bytes, str], Tuple[int, Dict[str, Any]]] = fake_stow
    api_key: Optional[str] = None           # required as x-api-key
    id_token: Optional[str] = None          # required as Authorization
    iam: bool = False                       # SigV4 required, checked with CREDENTIALS
    lock: threading.Lock = field(default_factory=threading.Lock)

    def injected(self, kind: str) -> Optional[str]:
        with self.lock:
            for name, table in (("drop", self.drops), ("unavailable", self.unavailable)):
                if table.get(kind, 0) > 0:
                    table[kind] -= 1
                    return name
        return None


@contextlib.contextmanager
def fake_api(**settings: Any) -> Iterator[FakeApi]:
    state = FakeApi(**settings)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _handler(state: FakeApi) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            if self.path == "/xray/jobs":
                self._api("create", self._create)
            elif self.path == "/upload":
                self._upload()
            elif self.path == "/pacs/studies":
                self._stow()
            else:
                self._json(404, {"Code": "NotFound", "Message": self.path})

        def do_GET(self) -> None:
            if self.path.startswith("/xray/jobs/") and \
                    "application/dicom" in self.headers.get("Accept", ""):
                self._api("report", self._report)
            elif self.path.startswith("/xray/jobs/"):
                self._api("poll", self._poll)
            else:
                self._json(404, {"Code": "NotFound", "Message": self.path})

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", ""):
                state.problems.append(f"chunked body on {self.path}")
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _api(self, kind: str, answer: Callable[[bytes], None]) -> None:
            body = self._body()
            headers = {name.lower(): value for name, value in self.headers.items()}
            state.api_headers.append(headers)
            if not self._injected(kind):
                refusal = self._unauthorized(headers, body)
                if refusal:
                    self._json(403, {"message": refusal})   # API Gateway's own shape
                else:
                    answer(body)

        def _injected(self, kind: str) -> bool:
            injected = state.injected(kind)
            if injected == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return True
            if injected == "unavailable":
                self._json(503, {"Code": "JobsUnavailable", "Message": "S3 did not answer"},
                           {"Retry-After": "0"})
                return True
            return False

        def _unauthorized(self, headers: Dict[str, str], body: bytes) -> Optional[str]:
            if state.api_key is not None and headers.get("x-api-key") != state.api_key:
                return "Forbidden"
            if state.id_token is not None and headers.get("authorization") != state.id_token:
                return "Unauthorized"
            if state.iam and not _signature_valid(self.command, state.url + self.path,
                                                  headers, body):
                return "The request signature we calculated does not match"
            return None

        def _create(self, body: bytes) -> None:
            request = json.loads(body)
            if request.get("content_type") not in CONTENT_TYPES:
                return self._json(415, {"Code": "UnsupportedImageType", "Message": "no"})
            if request["size"] > state.max_bytes:
                return self._json(413, {"Code": "PayloadTooLarge",
                                        "Message": f"a job takes at most {state.max_bytes}"})
            job_id = secrets.token_urlsafe(24)
            with state.lock:
                state.jobs[job_id] = Job(request["content_type"], request["size"])
                state.creates.append((request["content_type"], request["size"]))
            fields = {"key": f"uploads/{job_id}/image", "Content-Type": request["content_type"],
                      "x-amz-server-side-encryption": "AES256", "policy": "e30=",
                      "x-amz-signature": "00"}
            self._json(202, {"job_id": job_id, "status": "awaiting_upload",
                             "upload": {"method": "POST", "url": f"{state.url}/upload",
                                        "fields": fields, "max_bytes": request["size"],
                                        "expires_at": "2030-01-01T00:00:00Z"},
                             "status_url": f"{state.url}/xray/jobs/{job_id}"})

        def _upload(self) -> None:
            body = self._body()
            if self._injected("upload"):
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            state.upload_headers.append(headers)
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {headers.get('content-type', '')}\r\n\r\n".encode() + body)
            parts = {part.get_param("name", header="content-disposition"): part
                     for part in message.iter_parts()}
            names = list(parts)
            key = parts["key"].get_payload(decode=True).decode() if "key" in parts else ""
            job = state.jobs.get(key.split("/")[1]) if key.count("/") == 2 else None
            if job is None or names[-1:] != ["file"]:
                state.problems.append(f"upload parts {names}")
                return self._s3_error(400, "InvalidArgument", "the file must be the last field")
            missing = {"key", "Content-Type", "x-amz-server-side-encryption", "policy",
                       "x-amz-signature"} - set(names)
            data = parts["file"].get_payload(decode=True)
            if missing or len(data) != job.size or \
                    parts["Content-Type"].get_payload(decode=True).decode() != job.content_type:
                state.problems.append(f"upload missing {missing} or of {len(data)} bytes")
                return self._s3_error(400, "EntityTooSmall", "not the declared upload")
            with state.lock:
                job.data = data
                state.uploads.append(data)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _poll(self, body: bytes) -> None:
            job = state.jobs.get(self.path.rsplit("/", 1)[1])
            if job is None:
                return self._json(404, {"Code": "JobNotFound", "Message": "No job has this id"})
            with state.lock:
                state.polls += 1
                job.polls += 1
            view: Dict[str, Any] = {"job_id": self.path.rsplit("/", 1)[1],
                                    "created_at": "2026-01-01T00:00:00Z",
                                    "updated_at": "2026-01-01T00:00:01Z"}
            if job.data is None:
                view["status"] = "awaiting_upload"
            elif not state.finishing or job.polls <= state.polls_before_final:
                view["status"] = "running"
            else:
                status, outcome = state.classify(job.data)
                view.update(status=status, **outcome)
            self._json(200, view)

        def _report(self, body: bytes) -> None:
            """What the jobs route answers Accept: application/dicom with: the SR."""
            job_id = self.path.rsplit("/", 1)[1]
            job = state.jobs.get(job_id)
            if job is None:
                return self._json(404, {"Code": "JobNotFound", "Message": "No job has this id"})
            report = state.report(job.data) if job.data is not None else None
            if report is None:
                return self._json(406, {"Code": "NotAcceptable", "Message": "no SR for this"})
            with state.lock:
                state.reports.append((job_id, report))
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom")
            self.send_header("Content-Length", str(len(report)))
            self.end_headers()
            self.wfile.write(report)

        def _stow(self) -> None:
            body = self._body()
            if self._injected("stow"):
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            with state.lock:
                state.stow_requests.append((headers, body))
            status, module = state.stow(body, headers.get("content-type", ""))
            data = json.dumps(module).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _json(self, status: int, body: Dict[str, Any],
                  headers: Optional[Dict[str, str]] = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _s3_error(self, status: int, code: str, message: str) -> None:
            data = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                    f"<Message>{message}</Message></Error>").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _signature_valid(method: str, url: str, headers: Dict[str, str], body: bytes) -> bool:
    """Recomputes the SigV4 signature from what arrived (botocore as the reference), as API
    Gateway would: the client must have sent exactly what it signed."""
    authorization = headers.get("authorization", "")
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return False
    items = dict(item.strip().split("=", 1) for item in authorization[17:].split(","))
    if not items.get("Credential", "").startswith(
            f"{CREDENTIALS['AWS_ACCESS_KEY_ID']}/") or \
            f"/{REGION}/execute-api/aws4_request" not in items["Credential"]:
        return False
    signed = items["SignedHeaders"].split(";")
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: headers[name] for name in signed if name in headers})
    request.context["timestamp"] = headers.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                   CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                   CREDENTIALS["AWS_SESSION_TOKEN"]), "execute-api", REGION)
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    return signer.signature(string_to_sign, request) == items.get("Signature") and \
        "x-amz-security-token" in signed
