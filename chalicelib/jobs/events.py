"""The S3 events that drive jobs, as EventBridge delivers them: the rule patterns (one home, used
by app.py's triggers, the deploy checks and the local relay) and the parsing of one event.

S3 -> EventBridge -> rule packages with `chalice package` (Chalice refuses on_s3_event there)
and deploys with `chalice deploy` alike, so both paths use it (see the README)."""
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from chalicelib.jobs import layout

OBJECT_CREATED = "Object Created"
# A pattern that matches nothing, for a stage without a jobs bucket: the functions still exist
# (Chalice decides them at import) but no event reaches them.
NO_BUCKET = "-no-jobs-bucket-"


def _created_under(bucket: str, *prefixes: str) -> Dict[str, Any]:
    return {"source": ["aws.s3"], "detail-type": [OBJECT_CREATED],
            "detail": {"bucket": {"name": [bucket or NO_BUCKET]},
                       "object": {"key": [{"prefix": p} for p in prefixes]}}}


def worker_pattern(bucket: str) -> Dict[str, Any]:
    """Uploads of jobs and bucket batch inputs: what the worker classifies."""
    return _created_under(bucket, layout.UPLOADS, layout.BATCH)


def notifier_pattern(bucket: str) -> Dict[str, Any]:
    """A job's notice, written once when a job that asked to be notified ends."""
    return _created_under(bucket, layout.NOTICES)


@dataclass(frozen=True)
class CreatedObject:
    bucket: str
    key: str
    etag: str     # without quotes
    size: int


def created_object(event: Mapping[str, Any]) -> Optional[CreatedObject]:
    """The object an EventBridge "Object Created" event names; None for any other event."""
    if event.get("source") != "aws.s3" or event.get("detail-type") != OBJECT_CREATED:
        return None
    detail = event.get("detail") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    obj = detail.get("object") or {}
    key, etag, size = obj.get("key"), obj.get("etag", obj.get("eTag")), obj.get("size")
    if not isinstance(bucket, str) or not isinstance(key, str) or not isinstance(etag, str):
        return None
    return CreatedObject(bucket=bucket, key=key, etag=etag.strip('"'),
                         size=size if isinstance(size, int) else -1)
