"""The job worker: one S3 "Object Created" event in, at most one result out.

S3 delivers events at least once and out of order, so each step is a conditional write: a job
is claimed by writing its record only if it is unchanged since read (If-Match on its ETag), and
only for the upload the event names (its ETag); a result is written the same way, and a notice
only if absent. A duplicate event finds the job claimed or final and changes nothing; a claim
whose worker died is released by the sweeper (sweeper.py).

Uploads (uploads/<job_id>/image) are classified with the same service as POST /xray, so the
result is the JSON that route answers for the same bytes. Bucket batch inputs (batch/<name>/
<file>) are classified into results/<name>/<file>.json, and results/<name>/_summary.json holds
the counts once no input of the batch is left without a result.
"""
import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from chalicelib.errors import ClientError, ModelUnavailable
from chalicelib.jobs import layout
from chalicelib.jobs.events import CreatedObject, created_object
from chalicelib.jobs.records import (
    EXPIRED,
    FAILED,
    JOB_ABANDONED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    iso,
    now,
)
from chalicelib.jobs.store import JobStore, Stored
from chalicelib.reports import source
from chalicelib.settings import DEFAULT_STAGE, JobSettings

if TYPE_CHECKING:
    from chalicelib.service import Classification

log = logging.getLogger(__name__)

# (body, content_type, max_bytes, force) -> what POST /xray classifies (its JSON answer and a
# DICOM's header); raises what the route raises
Classify = Callable[[bytes, str, int, bool], "Classification"]
BATCH_CONTENT_TYPE = "application/octet-stream"  # the decoder recognises the format itself


def internal_error() -> Dict[str, str]:
    return {"Code": "InternalError",
            "Message": "The worker failed on this file; create a new job to try again"}


class Worker:
    def __init__(self, settings: JobSettings, store: JobStore, classify: Classify,
                 ready: Optional[Callable[[], None]] = None, stage: str = DEFAULT_STAGE) -> None:
        """ready: waits for the model (raising ModelUnavailable), called once a job is claimed
        so that queued means "waiting for the model" and running "being classified". stage:
        as the audit line names it."""
        self.settings = settings
        self.store = store
        self.classify = classify
        self.ready = ready or (lambda: None)
        self.stage = stage

    def handle(self, event: Dict[str, Any]) -> str:
        """What happened, as a short word for the log line (never a finding or a file name)."""
        obj = created_object(event)
        if obj is None or obj.bucket != self.store.bucket:
            return "ignored"
        job_id = layout.job_of_upload(obj.key)
        if job_id is not None:
            return self.upload(job_id, obj)
        batch = layout.batch_of(obj.key)
        if batch is not None:
            return self.batch_input(*batch, obj)
        return "ignored"

    # uploads of jobs
    def upload(self, job_id: str, obj: CreatedObject) -> str:
        stored = self.store.read(job_id)
        if stored is None:  # deleted, expired, or never a job: nothing may keep the bytes
            self.store.delete_object(obj.key)
            return "orphan"
        job = stored.job
        if job.final:
            # a repeated event, or an upload that came after the job ended (expired, or a second
            # upload with the same URL): nothing will read it, so only a stage that keeps
            # processed uploads keeps it, and never one the job expired without
            if job.status == EXPIRED or not self.settings.keep_uploads_days:
                self.store.delete_object(obj.key)
            return "duplicate"
        if job.claimed_at is not None:
            return "duplicate"
        claimed = self.store.write(stored, job.moved(
            QUEUED, attempts=job.attempts + 1, upload_etag=obj.etag, claimed_at=iso(now())))
        if claimed is None:
            return "duplicate"  # another delivery claimed it first
        try:
            self.ready()
        except ModelUnavailable:
            self._release(claimed)
            raise  # Lambda retries the event; the sweeper requeues it otherwise
        running = self.store.write(claimed, claimed.job.moved(RUNNING))
        if running is None:
            return "deleted"
        body = self.store.get_bytes(obj.key, obj.etag)
        if body is None:
            return self._finish(running, error={
                "Code": "UploadReplaced",
                "Message": "The upload changed while it was being read; create a new job"})
        if len(body) != job.size:
            return self._finish(running, error={
                "Code": "UploadSizeMismatch",
                "Message": f"The job declared {job.size:,} bytes; {len(body):,} arrived"})
        try:
            classified, error = self._classified(body, job.content_type, job.force)
        except ModelUnavailable:
            self._release(running)
            raise
        if classified is None:
            return self._finish(running, error=error)
        # a DICOM's study and patient elements, kept beside the result for its SR and FHIR only
        # where the operator opted in: they are the upload's patient fields
        header = source.to_json(classified.header) if self.settings.keep_dicom_headers else None
        return self._finish(running, result=classified.answer, header=header)

    def _classified(self, body: bytes, content_type: str, force: bool = False
                    ) -> Tuple[Optional["Classification"], Optional[Dict[str, str]]]:
        """(POST /xray's classification, None), or (None, the error as a job or batch result
        says it): the client's error by its class and message, a bug as InternalError (the log
        names its type only). ModelUnavailable is raised: it ends nothing, the event is
        retried."""
        try:
            return self.classify(body, content_type, self.settings.max_bytes, force), None
        except ClientError as error:
            return None, {"Code": type(error).__name__, "Message": str(error)}
        except ModelUnavailable:
            raise
        except Exception as error:
            log.error("classification failed: %s", type(error).__name__)
            return None, internal_error()

    def _release(self, stored: Stored) -> None:
        """Gives the claim back: the job is queued again, for a retried event or the sweeper."""
        self.store.write(stored, stored.job.moved(QUEUED, claimed_at=None))

    def _finish(self, stored: Stored, result: Optional[Dict[str, Any]] = None,
                error: Optional[Dict[str, str]] = None,
                header: Optional[Dict[str, Any]] = None) -> str:
        final = stored.job.moved(SUCCEEDED if result is not None else FAILED, result=result,
                                 error=error, header=header)
        if not finish(self.settings, self.store, stored, final):
            return "deleted"  # deleted (or expired) while running: the result is dropped
        from chalicelib.observability import audit
        audit.job_classification(job_id=final.job_id, stage=self.stage,
                                 requested_by=final.requested_by,
                                 model=(result or {}).get("model"),
                                 error_code=error["Code"] if error else None)
        return final.status

    # bucket batches
    def batch_input(self, name: str, file: str, obj: CreatedObject) -> str:
        key = layout.result_key(name, file)
        previous = self.store.get_bytes(key)
        if previous is not None and json.loads(previous).get("source_etag") == obj.etag \
                and not abandoned(previous):
            return "duplicate"
        body = self.store.get_bytes(obj.key, obj.etag)
        if body is None:
            return "replaced"  # a newer object has its own event
        record: Dict[str, Any] = {"file": file, "source_etag": obj.etag, "finished_at": ""}
        # ModelUnavailable is raised: retried with the event, or requeued by the sweeper
        classified, error = self._classified(body, BATCH_CONTENT_TYPE)
        if classified is not None:
            record.update(result=classified.answer, status=SUCCEEDED)
        else:
            record.update(status=FAILED, error=error)
        record["finished_at"] = iso(now())
        text = json.dumps(record, separators=(",", ":")).encode()
        if previous is None:
            if not self.store.claim(key, text):
                return "duplicate"
        else:
            self.store.put(key, text)
        if not self.settings.keep_uploads_days:
            self.store.delete_object(obj.key)
        summarise(self.store, name)
        return str(record["status"])


def finish(settings: JobSettings, store: JobStore, stored: Stored, final: Job) -> bool:
    """Writes `final` over the record read as `stored` (If-Match), then does what ending a job
    entails: its upload deleted (unless the stage keeps processed uploads; an expired job's
    never kept) and, if it asked for it, its notice written once. False, with nothing done,
    when the record moved or went since it was read. The worker and the sweeper both end jobs
    here."""
    if store.write(stored, final) is None:
        return False
    if final.status == EXPIRED or not settings.keep_uploads_days:
        store.delete_object(final.upload_key)
    if final.notify:
        write_notice(store, final)
    return True


def write_notice(store: JobStore, job: Job) -> bool:
    """notices/<job_id>.json, only if absent (a repeated end writes nothing): what triggers the
    notifier. It holds the id, the status and the link, never the addresses (the notifier reads
    them from the record)."""
    notice = {"job_id": job.job_id, "status": job.status, "status_url": job.status_url}
    return store.claim(layout.notice_key(job.job_id), json.dumps(notice).encode())


def abandoned(record: bytes) -> bool:
    """A batch result the sweeper wrote because no worker finished the input: a later event of
    the same input still classifies it (the sweeper cannot tell a lost event from a late one)."""
    return bool((json.loads(record).get("error") or {}).get("Code") == JOB_ABANDONED)


def summarise(store: JobStore, name: str) -> bool:
    """Writes results/<name>/_summary.json when every input of the batch has a result
    (each worker writes its result before looking, so the last one always sees all)."""
    prefix = f"{layout.BATCH}{name}/"
    inputs = [k for k in store.keys(prefix) if layout.batch_of(k)]
    results = set(store.keys(f"{layout.RESULTS}{name}/"))
    waiting = [k for k in inputs if layout.result_key(name, k[len(prefix):]) not in results]
    if waiting:
        return False
    summary = batch_summary(name, [store.get_bytes(k) for k in sorted(results)
                                   if k != layout.summary_key(name)])
    store.put(layout.summary_key(name), json.dumps(summary, indent=1).encode())
    return True


def batch_summary(name: str, records: List[Optional[bytes]]) -> Dict[str, Any]:
    counts = {SUCCEEDED: 0, FAILED: 0}
    positives: Dict[str, int] = {}
    models = set()
    for raw in records:
        if raw is None:
            continue
        record = json.loads(raw)
        counts[record.get("status", FAILED)] = counts.get(record.get("status", FAILED), 0) + 1
        result = record.get("result") or {}
        for label in result.get("positive", ()):
            positives[label] = positives.get(label, 0) + 1
        if result.get("model"):
            models.add(f"{result['model'].get('name')} {result['model'].get('version')}")
    return {"batch": name, "total": sum(counts.values()), **counts,
            "positives": dict(sorted(positives.items())), "models": sorted(models),
            "finished_at": iso(now())}


