"""`python -m client batch FOLDER --stow URL`: the SR of each DICOM file the batch classified,
fetched from its job (GET status_url with Accept: application/dicom) and stored into the
hospital's DICOMweb server with STOW-RS (POST URL/studies, multipart/related; type=
"application/dicom"), where it joins the source image's study. So the client can run next to
the PACS: the API never needs to reach it.

Only the job's result crosses: the SR is fetched with the API's credentials and sent with the
DICOMweb server's own headers (--stow-header), never the API's. Each file's outcome is the
"stow" member of its results.jsonl line; a stored SR is not sent again by a re-run to the same
URL, a failed one is. Nothing is printed of the SR but its outcome."""
import json
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from chalicelib.dicomweb import multipart
from client.results import SUCCEEDED
from client.transport import Refused, Transport

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
STORED, FAILED = "stored", "failed"
CONFLICT = 409  # STOW-RS: nothing stored; the body's Failed SOP Sequence says why


def studies_url(url: str) -> str:
    """The STOW-RS endpoint of a DICOMweb service root (http://pacs/dicom-web ->
    http://pacs/dicom-web/studies); a URL already ending in /studies is kept."""
    url = url.rstrip("/")
    return url if url.endswith("/studies") else f"{url}/studies"


def shown(url: str) -> str:
    """A URL as results.jsonl records it: without user:password@."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def parse_headers(values: List[str]) -> Dict[str, str]:
    """--stow-header 'Name: value' flags; ValueError for one that is not."""
    headers: Dict[str, str] = {}
    for value in values:
        name, colon, text = value.partition(":")
        if not colon or not name.strip() or any(c.isspace() for c in name.strip()):
            raise ValueError(f"--stow-header {value!r} is not 'Name: value'")
        headers[name.strip()] = text.strip()
    return headers


class Forwarder:
    def __init__(self, transport: Transport, api_url: str, url: str,
                 headers: Optional[Mapping[str, str]] = None) -> None:
        self.transport = transport
        self.api_url = api_url.rstrip("/")
        self.url = studies_url(url)
        self.headers = dict(headers or {})

    @property
    def shown_url(self) -> str:
        return shown(self.url)

    def wants(self, line: Mapping[str, Any]) -> bool:
        """A line whose SR is to be sent: a DICOM the batch's API classified (its answer says
        the format), not already stored at this URL."""
        result = line.get("result")
        image = result.get("image") if isinstance(result, dict) else None
        done = line.get("stow") or {}
        return (line.get("status") == SUCCEEDED and line.get("api") == self.api_url
                and isinstance(line.get("status_url"), str)
                and isinstance(image, dict) and image.get("format") == "dicom"
                and not (done.get("status") == STORED and done.get("url") == self.shown_url))

    def forward(self, status_url: str) -> Dict[str, Any]:
        """The "stow" member for the job at status_url: fetch its SR, STOW-RS it."""
        try:
            kind, sr = self.transport.fetch(status_url, DICOM)
        except Refused as error:
            return self._outcome(FAILED, error=_fetch_error(error), http_status=error.status)
        if kind.split(";", 1)[0].strip().lower() != DICOM:
            return self._outcome(FAILED, error={
                "Code": "NoReport",
                "Message": f"GET status_url with Accept: {DICOM} answered {kind or 'no type'}, "
                           f"not a DICOM SR: does this API give job results as SRs?"})
        boundary = multipart.new_boundary()
        body = multipart.join([(DICOM, sr)], boundary)
        headers = {**self.headers, "Content-Type": multipart.content_type(boundary, DICOM),
                   "Accept": DICOM_JSON}
        try:
            response = self.transport.post_elsewhere(self.url, body, headers,
                                                     answers=(CONFLICT,))
        except Refused as error:
            return self._outcome(FAILED, error=error.error(), http_status=error.status)
        stored, failed = _module(response.content)
        if response.status_code == CONFLICT or (failed and not stored):
            reasons = ", ".join(f"0x{reason:04X}" if reason >= 0 else "unreadable"
                                for reason in failed) or "none given"
            return self._outcome(FAILED, http_status=response.status_code, error={
                "Code": "NotStored",
                "Message": f"the DICOMweb server did not store the SR (Failure Reason: "
                           f"{reasons})"})
        return self._outcome(STORED, http_status=response.status_code,
                             sop_instance_uid=stored[0] if stored else None)

    def _outcome(self, status: str, **details: Any) -> Dict[str, Any]:
        return {"url": self.shown_url, "status": status,
                **{name: value for name, value in details.items() if value is not None},
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds")
                .replace("+00:00", "Z")}


def _fetch_error(error: Refused) -> Dict[str, str]:
    return {"Code": error.code, "Message": f"fetching the SR: {error.message}"}


def _module(content: bytes) -> Tuple[List[Optional[str]], List[int]]:
    """(the SOP Instance UID of each Referenced SOP Sequence item, None where it has none; the
    Failure Reason of each Failed SOP Sequence item) of a Store Instances Response Module in
    DICOM JSON; ([], []) for a body that is not one (a server may answer 200 with nothing)."""
    try:
        module = json.loads(content) if content else {}
    except ValueError:
        return [], []
    if not isinstance(module, dict):
        return [], []

    def first(item: Any, element: str) -> Any:
        value = (item.get(element) or {}).get("Value") if isinstance(item, dict) else None
        return value[0] if isinstance(value, list) and value else None

    def sequence(tag: str) -> List[Any]:
        found = module.get(tag)
        items = found.get("Value") if isinstance(found, dict) else None
        return items if isinstance(items, list) else []
    uids = [first(item, "00081155") for item in sequence("00081199")]
    reasons = [first(item, "00081197") for item in sequence("00081198")]
    return [str(uid) if uid is not None else None for uid in uids], \
        [int(reason) if isinstance(reason, (int, float)) else -1 for reason in reasons]
