"""POST, GET and DELETE /xray/jobs: a job is asked for with a small JSON body, answered with the
presigned upload at once (202), then read until it is final. The bytes never pass through here.
A succeeded job's result is negotiated like POST /xray's answer: JSON, DICOM SR or FHIR, the
reports' UIDs derived from the job, so every read gives the same instance."""
import json
import re
from datetime import timedelta
from typing import Any, Dict, Optional

from chalice import Response

from chalicelib.errors import (
    InvalidJobRequest,
    JobNotFound,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedImageType,
)
from chalicelib.imaging.formats import CONTENT_TYPES, DICOM, media_type
from chalicelib.jobs import layout
from chalicelib.jobs.notify import allowed_url
from chalicelib.jobs.presign import presigned_upload
from chalicelib.jobs.records import (
    AWAITING_UPLOAD,
    SUCCEEDED,
    Job,
    iso,
    new_job_id,
    now,
    parse_iso,
)
from chalicelib.jobs.store import JobStore, reachable
from chalicelib.reports import source
from chalicelib.reports.negotiation import JSON, negotiate
from chalicelib.reports.respond import respond
from chalicelib.settings import KEEP_DICOM_HEADERS, SES_SENDER, WEBHOOK_SECRET_NAME, JobSettings

EMAIL = re.compile(r"[^@\s<>,;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
FIELDS = ("content_type", "size", "notify", "force")


class JobService:
    def __init__(self, settings: JobSettings, store: JobStore) -> None:
        """The upload is presigned with the store's own S3 client, for the store's bucket."""
        self.settings = settings
        self.store = store

    def create(self, body: bytes, base_url: str,
               requested_by: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """requested_by: the caller (principal.as_log()), kept for the worker's audit line."""
        request = _json_object(body)
        content_type = _content_type(request.get("content_type"))
        size = _size(request.get("size"), self.settings.max_bytes)
        notify = self._notify(request.get("notify"))
        force = request.get("force", False)
        if not isinstance(force, bool):
            raise InvalidJobRequest('"force" must be true or false: true classifies a DICOM '
                                    "the model was not made for (the result says so)")
        job_id = new_job_id()
        started = now()
        key = layout.upload_key(job_id)
        with reachable(self.settings.bucket):
            upload = presigned_upload(self.store.s3, self.store.bucket, key, content_type, size,
                                      self.settings.upload_expires_s, started)
        status_url = f"{base_url}/xray/jobs/{job_id}"
        job = Job(job_id=job_id, status=AWAITING_UPLOAD, created_at=iso(started),
                  updated_at=iso(started), content_type=content_type, size=size,
                  upload_key=key,
                  expires_at=iso(started + timedelta(seconds=self.settings.upload_expires_s)),
                  status_url=status_url, notify=notify, requested_by=requested_by,
                  force=force)
        with reachable(self.settings.bucket):
            self.store.create(job)
        return {"job_id": job_id, "status": AWAITING_UPLOAD, "upload": upload,
                "status_url": status_url}

    def answer(self, job_id: str, accept: Optional[str]) -> Response:
        """GET /xray/jobs/{job_id} in the format Accept asks for: the JSON status (with the
        result once succeeded), or the succeeded result's SR or FHIR. A job without a result
        has only its JSON status: asked for a report, that is a 406 naming its status."""
        job = self._read(job_id)
        if job.status != SUCCEEDED or job.result is None:
            try:
                negotiate(accept, (JSON,))
            except NotAcceptable:
                raise NotAcceptable(f"The job is {job.status}: it has no report to answer "
                                    f"with, only its status as {JSON}. Poll with Accept: "
                                    f"{JSON} until it has succeeded.") from None
            return respond(job.view(), None, JSON)
        media = negotiate(accept)
        if media == JSON:
            return respond(job.view(), None, JSON)
        if job.header is None and job.result.get("image", {}).get("format") == DICOM:
            # without the input's patient and study elements a report could not join its
            # study, and a report that silently starts a new one would be misfiled
            raise NotAcceptable(
                f"This stage keeps no part of a DICOM upload, so the job's {media} report cannot "
                f"join the image's study: the job answers {JSON} only. For its SR or FHIR, send "
                f"the file to POST /xray or POST /studies (up to the synchronous limit), or ask "
                f"the operator to set {KEEP_DICOM_HEADERS}=true (a DICOM job then keeps the "
                f"header elements its reports copy beside its result, deleted with it).")
        # the job's id and its end make every read the same report
        return respond(job.result, source.from_json(job.header), media, uid_seed=job.job_id,
                       made_at=parse_iso(job.updated_at))

    def _read(self, job_id: str) -> Job:
        with reachable(self.settings.bucket):
            stored = self.store.read(job_id) if layout.valid_job_id(job_id) else None
        if stored is None:
            raise _not_found(job_id)
        return stored.job

    def delete(self, job_id: str) -> None:
        if not layout.valid_job_id(job_id):
            raise _not_found(job_id)
        with reachable(self.settings.bucket):
            found = self.store.delete(job_id)
        if not found:
            raise _not_found(job_id)

    def _notify(self, raw: Any) -> Optional[Dict[str, str]]:
        if raw is None:
            return None
        if not isinstance(raw, dict) or set(raw) - {"email", "webhook"}:
            raise InvalidJobRequest('"notify" must be an object with "email" and/or "webhook", '
                                    'e.g. {"email": "you@example.org"}')
        notify: Dict[str, str] = {}
        email, webhook = raw.get("email"), raw.get("webhook")
        if email is not None:
            if not isinstance(email, str) or not EMAIL.fullmatch(email):
                raise InvalidJobRequest('"notify.email" must be one e-mail address')
            if not self.settings.ses_sender:
                raise InvalidJobRequest(f"This stage sends no e-mail ({SES_SENDER} is not set): "
                                        'leave out "notify.email", or poll status_url')
            notify["email"] = email
        if webhook is not None:
            if not isinstance(webhook, str) or not allowed_url(webhook):  # the notifier's rule
                raise InvalidJobRequest('"notify.webhook" must be an https:// URL (http:// only '
                                        'for localhost)')
            if not self.settings.webhook_secret_name:
                raise InvalidJobRequest(f"This stage sends no webhooks ({WEBHOOK_SECRET_NAME} is "
                                        'not set): leave out "notify.webhook", or poll '
                                        "status_url")
            notify["webhook"] = webhook
        return notify or None


def _json_object(body: bytes) -> Dict[str, Any]:
    try:
        request = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        raise InvalidJobRequest('The body must be JSON like {"content_type": '
                                '"application/dicom", "size": 7200056}') from None
    if not isinstance(request, dict):
        raise InvalidJobRequest("The body must be a JSON object")
    unknown = sorted(set(request) - set(FIELDS))
    if unknown:
        raise InvalidJobRequest(f"Unknown field(s) {', '.join(unknown)}; a job takes "
                                f"{', '.join(FIELDS)}")
    return request


def _content_type(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise InvalidJobRequest('"content_type" is required: the type of the file you will '
                                f"upload ({', '.join(CONTENT_TYPES)})")
    content_type = media_type(raw)
    if content_type not in CONTENT_TYPES:
        raise UnsupportedImageType(f"Jobs classify {', '.join(CONTENT_TYPES)}; got "
                                   f"{content_type!r}")
    return content_type


def _size(raw: Any, max_bytes: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise InvalidJobRequest('"size" is required: the exact size of the file in bytes')
    if raw > max_bytes:
        raise PayloadTooLarge(f"The file is {raw:,} bytes; a job takes at most {max_bytes:,} "
                              "bytes on this stage")
    return raw


def _not_found(job_id: str) -> JobNotFound:
    return JobNotFound("No job has this id (it may have expired or been deleted): create one "
                       "with POST /xray/jobs")
