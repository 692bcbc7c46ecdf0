"""The audit trail: one line per classification (POST /xray), whatever its outcome, saying who
asked (the principal API Gateway authenticated, and from which address), which model answered
(name, version, sha256) and how it ended. It says nothing of what was sent or found: no pixels,
no findings, no DICOM field, no error message (a message may quote a header the client sent)."""
from typing import Any, Mapping, Optional

from chalicelib.observability.logging import logger
from chalicelib.web.principal import Principal

MODEL_FIELDS = ("name", "version", "sha256")


def outcome(status: int) -> str:
    """classified (2xx), refused (4xx: the request as sent cannot be served) or failed (5xx)."""
    return "classified" if status < 400 else "refused" if status < 500 else "failed"


def classification(*, request_id: Optional[str], stage: str, principal: Principal,
                   source_ip: Optional[str], model: Optional[Mapping[str, Any]], status: int,
                   error_code: Optional[str], heatmap: bool) -> None:
    logger.info("audit", extra={
        "event": "audit", "action": "classify", "request_id": request_id, "stage": stage,
        "principal": principal.as_log(), "source_ip": source_ip,
        "model": {name: model.get(name) for name in MODEL_FIELDS} if model else None,
        "outcome": outcome(status), "status": status, "error_code": error_code,
        "heatmap": heatmap,
    })
