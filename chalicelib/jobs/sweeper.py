"""The job sweeper: what S3's events alone cannot guarantee, put right on a schedule.

S3 delivers events at least once but, rarely, not at all; a worker can die mid-job (a timeout,
an out-of-memory kill) holding its claim; a client can ask for a job and never upload. The
sweeper lists the jobs not yet final (pending/) and the bucket batch inputs, and for each one
either leaves it (its event may still be on its way), sends it through the normal trigger again
(requeue: the object copied onto itself, which emits a new Object Created event), or ends it.
It never reads an upload's bytes and never classifies: the worker does, from the event.

Every transition is a conditional write on the record as read (If-Match): a worker or a client
that moved the job in between wins, and the sweeper skips it until its next run. The rules, and
why each wait is as long as it is, are in the README's "The sweeper" section.
"""
import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Dict, Iterator, Optional, Set

from chalicelib.jobs import layout
from chalicelib.jobs.records import (
    AWAITING_UPLOAD,
    EXPIRED,
    FAILED,
    JOB_ABANDONED,
    QUEUED,
    UPLOAD_NOT_RECEIVED,
    iso,
    parse_iso,
)
from chalicelib.jobs.records import now as clock
from chalicelib.jobs.store import JobStore, Stored
from chalicelib.jobs.worker import finish, summarise
from chalicelib.settings import JobSettings

# How long an upload (or a marker) may sit before its event counts as lost: S3 -> EventBridge
# -> Lambda usually takes seconds; a requeue that comes too early only costs a duplicate event.
GRACE = timedelta(minutes=2)
# A claim older than this belongs to a worker that is gone: Lambda stops a function after at
# most 900 s, plus a margin for the clocks of two functions.
STALE_CLAIM = timedelta(seconds=900 + 120)
# Claims of a job (or requeues of a batch input) after which it is given up (JobAbandoned).
MAX_ATTEMPTS = 3

# What sweep() counts, in its answer and its log line
REQUEUED, RELEASED, EXPIRED_JOBS, ABANDONED = "requeued", "released", "expired", "abandoned"
FORGOTTEN, CLEANED, SKIPPED, WAITING = "forgotten", "cleaned", "skipped", "waiting"
BATCH_REQUEUED, BATCH_ABANDONED = "batch_requeued", "batch_abandoned"
ACTIONS = (REQUEUED, RELEASED, EXPIRED_JOBS, ABANDONED, FORGOTTEN, CLEANED, SKIPPED, WAITING,
           BATCH_REQUEUED, BATCH_ABANDONED)


def sweep(settings: JobSettings, store: JobStore,
          now: Optional[datetime] = None) -> Dict[str, int]:
    """One pass over pending/ and batch/: {action: how many} (every action of ACTIONS, 0 when
    none), also logged as one line of counts (never an id, a key or a file name)."""
    moment = now or clock()
    counts: Counter = Counter({action: 0 for action in ACTIONS})
    for job_id in list(store.pending()):
        counts[_sweep_job(settings, store, job_id, moment)] += 1
    for action in _sweep_batches(store, moment):
        counts[action] += 1
    from chalicelib.observability.logging import logger
    logger.info("job sweep", extra={"event": "sweep", "counts": dict(counts)})
    return dict(counts)


def _sweep_job(settings: JobSettings, store: JobStore, job_id: str, moment: datetime) -> str:
    stored = store.read(job_id)
    if stored is None:
        return _forgotten(store, job_id, moment)
    job = stored.job
    if job.final:  # ended, but its marker's delete did not happen
        store.delete_object(layout.pending_key(job_id))
        return CLEANED
    if job.status == AWAITING_UPLOAD:
        return _awaiting(settings, store, stored, moment)
    if job.claimed_at is not None:
        return _claimed(settings, store, stored, moment)
    return _unclaimed(settings, store, stored, moment)


def _forgotten(store: JobStore, job_id: str, moment: datetime) -> str:
    """A marker without a record: the job was deleted (and the marker's delete failed), or its
    record was never written (the API failed), or it is being created right now (the marker is
    written first): the grace leaves that one alone."""
    marker = store.info(layout.pending_key(job_id))
    if marker is None:
        return SKIPPED  # gone meanwhile
    if moment - marker.last_modified <= GRACE:
        return WAITING
    store.delete_object(layout.pending_key(job_id))
    return FORGOTTEN


def _awaiting(settings: JobSettings, store: JobStore, stored: Stored, moment: datetime) -> str:
    """No worker claimed the job yet. Its upload there past the grace: the event was lost, so
    the job is queued (what it is: uploaded, waiting for a worker) and the upload requeued.
    No upload and the URL expired (plus the grace, for an upload still in flight): expired."""
    job = stored.job
    upload = store.info(job.upload_key)
    if upload is not None:
        if moment - upload.last_modified <= GRACE:
            return WAITING
        queued = store.write(stored, job.moved(QUEUED, claimed_at=None))
        if queued is None:
            return SKIPPED
        store.requeue(job.upload_key, job.attempts)
        return REQUEUED
    if moment <= parse_iso(job.expires_at) + GRACE:
        return WAITING
    final = job.moved(EXPIRED, error={
        "Code": UPLOAD_NOT_RECEIVED,
        "Message": f"No upload arrived before the upload URL expired at {job.expires_at}; "
                   "create a new job and upload within its expiry"})
    if not finish(settings, store, stored, final):
        return SKIPPED
    return EXPIRED_JOBS


def _claimed(settings: JobSettings, store: JobStore, stored: Stored, moment: datetime) -> str:
    """A worker holds the job. Past STALE_CLAIM that worker is gone: the claim is released and
    the upload requeued, or, after MAX_ATTEMPTS claims, the job is abandoned."""
    job = stored.job
    if job.claimed_at is None or moment - parse_iso(job.claimed_at) <= STALE_CLAIM:
        return WAITING
    if job.attempts >= MAX_ATTEMPTS:
        return _abandon(settings, store, stored,
                        f"No worker finished this job in {job.attempts} attempts")
    if store.info(job.upload_key) is None:
        return _abandon(settings, store, stored, "The upload is gone")
    released = store.write(stored, job.moved(QUEUED, claimed_at=None))
    if released is None:
        return SKIPPED
    store.requeue(job.upload_key, job.attempts)
    return RELEASED


def _unclaimed(settings: JobSettings, store: JobStore, stored: Stored, moment: datetime) -> str:
    """Queued with no claim: released by a worker that found no model, by the sweeper, or
    queued by the sweeper after a lost event. Requeued once it has waited the grace; given up
    after MAX_ATTEMPTS claims. Never for waiting alone: in a backlog (Lambda's own queue of
    events) a job waits without anything being wrong."""
    job = stored.job
    if moment - parse_iso(job.updated_at) <= GRACE:
        return WAITING
    if job.attempts >= MAX_ATTEMPTS:
        return _abandon(settings, store, stored,
                        f"No worker finished this job in {job.attempts} attempts (the model "
                        "was not available)")
    if not store.requeue(job.upload_key, job.attempts):
        return _abandon(settings, store, stored, "The upload is gone")
    return REQUEUED


def _abandon(settings: JobSettings, store: JobStore, stored: Stored, why: str) -> str:
    final = stored.job.moved(FAILED, claimed_at=None, error={
        "Code": JOB_ABANDONED, "Message": f"{why}; create a new job to try again"})
    return ABANDONED if finish(settings, store, stored, final) else SKIPPED


def _sweep_batches(store: JobStore, moment: datetime) -> Iterator[str]:
    """Bucket batch inputs without a result: requeued once they have waited STALE_CLAIM (a
    worker may take that long on one, and a batch's events queue up behind each other), given
    a failed result after MAX_ATTEMPTS requeues. That result does not stop a later event of the
    same input from classifying it (worker.abandoned)."""
    results: Dict[str, Set[str]] = {}  # per batch name, listed once it has an input
    touched = set()
    for key in list(store.keys(layout.BATCH)):
        batch = layout.batch_of(key)
        if batch is None:
            continue
        name = batch[0]
        if name not in results:
            results[name] = set(store.keys(f"{layout.RESULTS}{name}/"))
        if layout.result_key(*batch) in results[name]:
            continue
        info = store.info(key)
        if info is None or moment - info.last_modified <= STALE_CLAIM:
            yield WAITING
            continue
        if info.requeues < MAX_ATTEMPTS:
            yield BATCH_REQUEUED if store.requeue(key, info.requeues + 1) else WAITING
            continue
        name, file = batch
        record = {"file": file, "source_etag": info.etag, "finished_at": iso(clock()),
                  "status": FAILED,
                  "error": {"Code": JOB_ABANDONED,
                            "Message": f"No worker classified this file in {info.requeues + 1} "
                                       "deliveries; upload it again to retry"}}
        if store.claim(layout.result_key(name, file),
                       json.dumps(record, separators=(",", ":")).encode()):
            touched.add(name)
            yield BATCH_ABANDONED
        else:
            yield SKIPPED
    for name in sorted(touched):
        summarise(store, name)
