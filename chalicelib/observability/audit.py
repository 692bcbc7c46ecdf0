"""The audit trail: one line per classification (POST /xray, a STOW-RS request with its
instance counts, or a job's upload classified by the worker), whatever its outcome, saying who
asked (the principal API Gateway authenticated, and from which address), which model answered
(name, version, sha256) and how it ended; and one line per access to a job (created, read,
deleted), since a job's record holds a result. It says nothing of what was sent or found: no
pixels, no findings, no DICOM field (no UID either), no error message (a message may quote a
header the client sent), and never a job's id, which is the handle to its result: a job is named
by job_ref, a digest the same on every line about it."""
import hashlib
from typing import Any, Dict, Mapping, Optional

from chalicelib.observability.logging import logger
from chalicelib.web.principal import Principal

MODEL_FIELDS = ("name", "version", "sha256")


def outcome(status: int) -> str:
    """classified (2xx), refused (4xx: the request as sent cannot be served) or failed (5xx)."""
    return "classified" if status < 400 else "refused" if status < 500 else "failed"


def job_ref(job_id: str) -> str:
    """What the log calls a job: enough to match lines, useless to read the job with."""
    return hashlib.sha256(job_id.encode()).hexdigest()[:16]


def classification(*, request_id: Optional[str], stage: str, principal: Principal,
                   source_ip: Optional[str], model: Optional[Mapping[str, Any]], status: int,
                   error_code: Optional[str], heatmap: bool,
                   instances: Optional[Mapping[str, Any]] = None) -> None:
    """instances: for STOW-RS, how many instances came, were classified and failed by reason
    (a 2xx with failures is still "classified": some were)."""
    extra = {} if instances is None else {"via": "stow", "instances": dict(instances)}
    logger.info("audit", extra={
        "event": "audit", "action": "classify", "request_id": request_id, "stage": stage,
        "principal": principal.as_log(), "source_ip": source_ip,
        "model": {name: model.get(name) for name in MODEL_FIELDS} if model else None,
        "outcome": outcome(status), "status": status, "error_code": error_code,
        "heatmap": heatmap, **extra,
    })


def job_access(*, action: str, request_id: Optional[str], stage: str, principal: Principal,
               source_ip: Optional[str], job_id: Optional[str], status: int,
               error_code: Optional[str]) -> None:
    """create_job, read_job or delete_job, by whom, and how it ended."""
    logger.info("audit", extra={
        "event": "audit", "action": action, "request_id": request_id, "stage": stage,
        "principal": principal.as_log(), "source_ip": source_ip,
        "job_ref": job_ref(job_id) if job_id else None,
        "outcome": "done" if status < 400 else "refused" if status < 500 else "failed",
        "status": status, "error_code": error_code,
    })


def job_classification(*, job_id: str, stage: str, requested_by: Optional[Dict[str, Any]],
                       model: Optional[Mapping[str, Any]], error_code: Optional[str]) -> None:
    """The worker's line for a job it ended: the principal is the one who created the job."""
    logger.info("audit", extra={
        "event": "audit", "action": "classify", "via": "job", "stage": stage,
        "principal": requested_by, "job_ref": job_ref(job_id),
        "model": {name: model.get(name) for name in MODEL_FIELDS} if model else None,
        "outcome": "classified" if error_code is None else "refused",
        "error_code": error_code,
    })
