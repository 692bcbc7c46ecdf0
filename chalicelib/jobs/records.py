"""A job as it is stored (jobs/<job_id>.json) and as GET /xray/jobs/{job_id} shows it."""
import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Dict, Optional

AWAITING_UPLOAD, QUEUED, RUNNING = "awaiting_upload", "queued", "running"
SUCCEEDED, FAILED, EXPIRED = "succeeded", "failed", "expired"
STATUSES = (AWAITING_UPLOAD, QUEUED, RUNNING, SUCCEEDED, FAILED, EXPIRED)
FINAL = (SUCCEEDED, FAILED, EXPIRED)
# The error codes the jobs path gives itself (a classification's are the sync route's classes):
# no upload came before the URL expired (expired), no worker finished it (failed). The sweeper
# (sweeper.py) gives both.
UPLOAD_NOT_RECEIVED = "UploadNotReceived"
JOB_ABANDONED = "JobAbandoned"


def new_job_id() -> str:
    """192 random bits, URL-safe: the id is the job's only handle besides the stage's auth."""
    return secrets.token_urlsafe(24)


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Job:
    job_id: str
    status: str
    created_at: str
    updated_at: str
    content_type: str
    size: int
    upload_key: str
    expires_at: str                     # when the presigned upload stops being accepted
    status_url: str
    notify: Optional[Dict[str, str]] = None   # {"email"?, "webhook"?}
    attempts: int = 0                   # claims by a worker
    upload_etag: Optional[str] = None   # the upload the claim is for
    claimed_at: Optional[str] = None    # when a worker claimed it (None: nobody holds it)
    result: Optional[Dict[str, Any]] = None          # succeeded: what POST /xray answers
    error: Optional[Dict[str, str]] = field(default=None)  # failed/expired: {"Code","Message"}
    # who created it, as the audit line names a principal (identifiers only, never a key)
    requested_by: Optional[Dict[str, Any]] = None
    force: bool = False                 # classify even outside the model's intended use
    # succeeded, from a DICOM: the header elements its SR and FHIR copy (chalicelib/reports/
    # source.py), as DICOM JSON. Patient fields: never shown by view(), deleted with the job.
    header: Optional[Dict[str, Any]] = None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def moved(self, status: str, **changes: Any) -> "Job":
        """This job in another status (updated_at now), with the given fields changed."""
        return replace(self, status=status, updated_at=iso(now()), **changes)

    def view(self) -> Dict[str, Any]:
        """What GET /xray/jobs/{job_id} answers: no upload details, no notify addresses."""
        shown: Dict[str, Any] = {"job_id": self.job_id, "status": self.status,
                                 "created_at": self.created_at, "updated_at": self.updated_at}
        if self.status == SUCCEEDED:
            shown["result"] = self.result
        elif self.error is not None:
            shown["error"] = self.error
        return shown

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Job":
        raw = json.loads(data)
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)
