"""One file through the jobs path (README, upload jobs): POST /xray/jobs with its type and size,
the presigned S3 POST of its bytes, then GET status_url until the job is final.

The upload is streamed (a job may be 200 MB) as multipart/form-data with the policy's fields
first and the file last, as S3 requires, and with a Content-Length: S3 refuses a chunked POST."""
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from client.transport import Refused, Transport

FINAL = ("succeeded", "failed", "expired")
FILE_FIELD = "file"
UPLOAD_NAME = "image"   # the part's filename: never the file's own name (it may hold a patient's)
READ_BYTES = 256 * 1024


class StillRunning(Exception):
    """The job was not final when the client stopped waiting; a re-run polls it again."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class JobsApi:
    def __init__(self, transport: Transport, api_url: str, poll_first_s: float = 0.5,
                 poll_max_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 stop: Optional[threading.Event] = None) -> None:
        self.transport = transport
        self.api_url = api_url.rstrip("/")
        self.poll_first_s = poll_first_s
        self.poll_max_s = poll_max_s
        self.clock = clock
        self.stop = stop or threading.Event()

    def create(self, content_type: str, size: int) -> Dict[str, Any]:
        """The 202 answer: job_id, status, upload {url, fields, ...}, status_url."""
        body = json.dumps({"content_type": content_type, "size": size}).encode()
        answer = self.transport.api("POST", f"{self.api_url}/xray/jobs", body)
        if not isinstance(answer, dict) or not isinstance(answer.get("upload"), dict) \
                or "job_id" not in answer or "status_url" not in answer:
            raise Refused("InvalidResponse", "POST /xray/jobs answered without job_id, upload "
                          "and status_url: is --api the API's base URL?")
        return answer

    def upload(self, upload: Dict[str, Any], path: Path, content_type: str,
               on_bytes: Callable[[int], None]) -> None:
        fields = {str(name): str(value) for name, value in upload.get("fields", {}).items()}
        boundary = "xray-" + secrets.token_hex(16)
        sent = [0]

        def counted(n: int) -> None:
            sent[0] += n
            on_bytes(n)

        def rewind() -> None:
            on_bytes(-sent[0])
            sent[0] = 0
        self.transport.post_form(
            upload["url"], lambda: MultipartFile(fields, path, content_type, boundary, counted),
            {"Content-Type": f"multipart/form-data; boundary={boundary}"}, rewind)

    def status(self, status_url: str) -> Dict[str, Any]:
        view = self.transport.api("GET", status_url)
        if not isinstance(view, dict) or "status" not in view:
            raise Refused("InvalidResponse", "the job's status answer has no status")
        return view

    def wait(self, status_url: str, timeout_s: float) -> Dict[str, Any]:
        """The job's final view; StillRunning once timeout_s passed (or the batch is stopped)."""
        deadline = self.clock() + timeout_s
        interval = self.poll_first_s
        while True:
            view = self.status(status_url)
            if view["status"] in FINAL:
                return view
            left = deadline - self.clock()
            if left <= 0 or self.stop.is_set():
                raise StillRunning(str(view["status"]))
            if self.stop.wait(min(interval, left)):
                raise StillRunning(str(view["status"]))
            interval = min(self.poll_max_s, interval * 1.5)


class MultipartFile:
    """A multipart/form-data body read from disk as it is sent, with its exact length (requests
    sends a Content-Length for an object with __len__, and reads it in blocks)."""

    def __init__(self, fields: Dict[str, str], path: Path, content_type: str, boundary: str,
                 on_bytes: Callable[[int], None]) -> None:
        parts: List[bytes] = []
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                         f"\r\n\r\n{value}\r\n".encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{FILE_FIELD}"; '
                     f'filename="{UPLOAD_NAME}"\r\nContent-Type: {content_type}\r\n\r\n'
                     .encode())
        self._head = b"".join(parts)
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._size = path.stat().st_size
        self._path = path
        self._file: Optional[Any] = None
        self._position = 0
        self._on_bytes = on_bytes

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = len(self)
        size = max(size, 1)
        head_end, file_end = len(self._head), len(self._head) + self._size
        chunk = b""
        if self._position < head_end:
            chunk = self._head[self._position:self._position + size]
        elif self._position < file_end:
            if self._file is None:
                self._file = open(self._path, "rb")
            chunk = self._file.read(min(size, READ_BYTES, file_end - self._position))
            if not chunk:  # the file shrank while being sent: S3 then refuses the length
                self.close()
                raise OSError(f"{self._path.name} changed while it was being uploaded")
            self._on_bytes(len(chunk))
            if self._position + len(chunk) == file_end:
                self.close()
        else:
            chunk = self._tail[self._position - file_end:self._position - file_end + size]
        self._position += len(chunk)
        return chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
