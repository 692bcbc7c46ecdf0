"""Where everything of a job lives in the jobs bucket: one home for every key and prefix, so the
API, the worker, the sweeper, the notifier, the lifecycle rules and the IAM policies agree."""
import re
from typing import Optional, Tuple

JOBS, PENDING, UPLOADS, NOTICES, NOTIFIED = "jobs/", "pending/", "uploads/", "notices/", "notified/"
BATCH, RESULTS = "batch/", "results/"
UPLOAD_NAME = "image"
SUMMARY_NAME = "_summary.json"
# Prefixes whose objects expire after the stage's result days, and those holding uploads
# (deleted once processed; a lifecycle rule is the backstop, or the retention when kept).
RESULT_PREFIXES = (JOBS, PENDING, NOTICES, NOTIFIED, RESULTS)
UPLOAD_PREFIXES = (UPLOADS, BATCH)

# secrets.token_urlsafe(24): 32 characters, 192 random bits
JOB_ID = re.compile(r"[A-Za-z0-9_-]{32}")
# batch/<name>/<file>: a name S3 keys and CloudWatch dimensions both take
BATCH_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def valid_job_id(job_id: str) -> bool:
    return bool(JOB_ID.fullmatch(job_id or ""))


def record_key(job_id: str) -> str:
    return f"{JOBS}{job_id}.json"


def pending_key(job_id: str) -> str:
    return f"{PENDING}{job_id}"


def upload_key(job_id: str) -> str:
    return f"{UPLOADS}{job_id}/{UPLOAD_NAME}"


def notice_key(job_id: str) -> str:
    return f"{NOTICES}{job_id}.json"


def notified_key(job_id: str, channel: str) -> str:
    return f"{NOTIFIED}{job_id}/{channel}"


def job_of_upload(key: str) -> Optional[str]:
    """uploads/<job_id>/image -> job_id; None for any other key."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] + "/" == UPLOADS and parts[2] == UPLOAD_NAME \
            and valid_job_id(parts[1]):
        return parts[1]
    return None


def job_of_notice(key: str) -> Optional[str]:
    """notices/<job_id>.json -> job_id; None for any other key."""
    if key.startswith(NOTICES) and key.endswith(".json"):
        job_id = key[len(NOTICES):-len(".json")]
        return job_id if valid_job_id(job_id) else None
    return None


def batch_of(key: str) -> Optional[Tuple[str, str]]:
    """batch/<name>/<file> -> (name, file); None for any other key (or a folder marker)."""
    if not key.startswith(BATCH):
        return None
    name, _, file = key[len(BATCH):].partition("/")
    if not BATCH_NAME.fullmatch(name) or not file or file.endswith("/"):
        return None
    return name, file


def result_key(name: str, file: str) -> str:
    return f"{RESULTS}{name}/{file}.json"


def summary_key(name: str) -> str:
    return f"{RESULTS}{name}/{SUMMARY_NAME}"
