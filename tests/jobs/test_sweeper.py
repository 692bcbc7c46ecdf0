"""The sweeper on a moto server: lost events requeued through the real trigger (the requeue's
own S3 event, read from the worker's queue), expired uploads, claims of workers that died,
abandoned jobs, stray markers and lost races. Time is the sweeper's `now`, moved past each
wait; nothing sleeps."""
import dataclasses
import json
from datetime import timedelta

import pytest

from chalicelib.errors import ModelUnavailable
from chalicelib.jobs import layout
from chalicelib.jobs.records import iso, now, parse_iso
from chalicelib.jobs.store import JobStore
from chalicelib.jobs.sweeper import ACTIONS, GRACE, MAX_ATTEMPTS, STALE_CLAIM, sweep
from chalicelib.settings import SES_SENDER
from tests.jobs.conftest import without_timings
from tests.support.fixtures import PNG_CARDIOMEGALY
from tests.support.jobs import upload

NOTIFY = {"email": "radiologist@example.org"}
SECOND = timedelta(seconds=1)


@pytest.fixture(scope="module")
def app_env():
    return {SES_SENDER: "xray-jobs@example.org"}


class Died(BaseException):
    """What a worker's end looks like from the bucket when Lambda stops it (timeout, memory):
    nothing after the claim happens. Not an Exception, so the worker cannot catch it."""


def dies(body, content_type, max_bytes, force=False):
    raise Died()


def no_model():
    raise ModelUnavailable("The model store did not answer", retry_after_s=30)


def swept(jobs_app, at, settings=None, store=None):
    """sweep() at `at`; its counts without the zeros."""
    counts = sweep(settings or jobs_app.settings(), store or jobs_app.stack.store(), now=at)
    assert set(counts) == set(ACTIONS)
    return {action: n for action, n in counts.items() if n}


def uploaded(jobs_app, notify=None):
    """(job_id, body, the upload's event): a job whose PNG is in the bucket."""
    body = PNG_CARDIOMEGALY.read_bytes()
    answer = jobs_app.job("image/png", len(body), notify=notify)
    assert upload(answer["upload"], body).status_code == 204
    (event,) = jobs_app.stack.worker_events()
    return answer["job_id"], body, event


def record(jobs_app, job_id):
    return jobs_app.stack.store().read(job_id).job


def requeued_event(jobs_app, job_id):
    """The one event the sweeper's requeue made S3 emit, for the job's upload."""
    (event,) = jobs_app.stack.worker_events()
    assert event["detail"]["object"]["key"] == layout.upload_key(job_id)
    return event


def test_given_an_upload_whose_event_was_lost_when_swept_then_requeued_and_it_succeeds(
        jobs_app):
    job_id, body, _lost = uploaded(jobs_app)  # never delivered
    arrived = jobs_app.stack.store().info(layout.upload_key(job_id)).last_modified

    assert swept(jobs_app, arrived + GRACE) == {"waiting": 1}
    assert jobs_app.stack.worker_events() == []
    assert swept(jobs_app, arrived + GRACE + SECOND) == {"requeued": 1}

    assert jobs_app.status(job_id)[1]["status"] == "queued"  # uploaded, waiting for a worker
    event = requeued_event(jobs_app, job_id)
    assert event["detail"]["object"]["eTag"] == _lost["detail"]["object"]["eTag"]
    assert jobs_app.deliver(event) == "succeeded"
    result = jobs_app.status(job_id)[1]["result"]
    assert without_timings(result) == without_timings(jobs_app.classify(body, "image/png")[1])
    assert swept(jobs_app, now() + STALE_CLAIM * 2) == {}  # nothing pending any more


def test_given_a_requeued_job_whose_event_is_lost_again_then_requeued_again(jobs_app):
    job_id, _, _ = uploaded(jobs_app)
    swept(jobs_app, now() + GRACE + SECOND)
    jobs_app.stack.worker_events()  # lost too
    queued_at = parse_iso(record(jobs_app, job_id).updated_at)

    assert swept(jobs_app, queued_at + GRACE) == {"waiting": 1}
    assert swept(jobs_app, queued_at + GRACE + SECOND) == {"requeued": 1}

    assert jobs_app.deliver(requeued_event(jobs_app, job_id)) == "succeeded"


def test_given_no_upload_when_the_url_has_expired_then_expired_and_notified(jobs_app):
    answer = jobs_app.job("image/png", 1000, notify=NOTIFY)
    job_id = answer["job_id"]
    expires_at = parse_iso(answer["upload"]["expires_at"])

    assert swept(jobs_app, expires_at + GRACE) == {"waiting": 1}
    assert swept(jobs_app, expires_at + GRACE + SECOND) == {"expired": 1}

    status, job = jobs_app.status(job_id)
    assert status == 200 and job["status"] == "expired"
    assert job["error"]["Code"] == "UploadNotReceived"
    assert answer["upload"]["expires_at"] in job["error"]["Message"]
    assert jobs_app.stack.keys() == [layout.record_key(job_id), layout.notice_key(job_id)]
    notice = json.loads(jobs_app.stack.store().get_bytes(layout.notice_key(job_id)))
    assert notice["status"] == "expired"
    assert len(jobs_app.stack.notifier_events()) == 1
    assert swept(jobs_app, expires_at + STALE_CLAIM) == {}


@pytest.mark.parametrize("keep_uploads_days", [0, 30])
def test_given_an_expired_job_when_its_upload_comes_late_then_the_upload_is_deleted(
        jobs_app, keep_uploads_days):
    body = PNG_CARDIOMEGALY.read_bytes()
    answer = jobs_app.job("image/png", len(body))
    swept(jobs_app, parse_iso(answer["upload"]["expires_at"]) + GRACE + SECOND)
    # moto does not enforce the policy's expiration; S3 refuses an upload that starts after it
    assert upload(answer["upload"], body).status_code == 204
    (event,) = jobs_app.stack.worker_events()
    keeping = dataclasses.replace(jobs_app.settings(), keep_uploads_days=keep_uploads_days)

    assert jobs_app.deliver(event, settings=keeping) == "duplicate"

    assert jobs_app.status(answer["job_id"])[1]["status"] == "expired"
    assert jobs_app.stack.keys() == [layout.record_key(answer["job_id"])]


def test_given_a_worker_that_died_when_its_claim_is_stale_then_released_and_requeued(jobs_app):
    job_id, body, event = uploaded(jobs_app)
    with pytest.raises(Died):
        jobs_app.deliver(event, classify=dies)
    held = record(jobs_app, job_id)
    assert (held.status, held.attempts) == ("running", 1)
    claimed_at = parse_iso(held.claimed_at)

    assert swept(jobs_app, claimed_at + STALE_CLAIM) == {"waiting": 1}
    assert jobs_app.deliver(event) == "duplicate"  # Lambda's retry finds the claim held
    assert swept(jobs_app, claimed_at + STALE_CLAIM + SECOND) == {"released": 1}

    released = record(jobs_app, job_id)
    assert (released.status, released.claimed_at, released.attempts) == ("queued", None, 1)
    assert jobs_app.deliver(requeued_event(jobs_app, job_id)) == "succeeded"
    assert record(jobs_app, job_id).attempts == 2
    assert jobs_app.stack.keys() == [layout.record_key(job_id)]


def test_given_workers_that_die_every_time_then_abandoned_after_the_last_attempt(jobs_app):
    job_id, _, event = uploaded(jobs_app, notify=NOTIFY)
    outcomes = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with pytest.raises(Died):
            jobs_app.deliver(event, classify=dies)
        stale = parse_iso(record(jobs_app, job_id).claimed_at) + STALE_CLAIM + SECOND
        outcomes.append(swept(jobs_app, stale))
        if attempt < MAX_ATTEMPTS:
            event = requeued_event(jobs_app, job_id)

    assert outcomes == [{"released": 1}] * (MAX_ATTEMPTS - 1) + [{"abandoned": 1}]
    status, job = jobs_app.status(job_id)
    assert (job["status"], job["error"]["Code"]) == ("failed", "JobAbandoned")
    assert f"{MAX_ATTEMPTS} attempts" in job["error"]["Message"]
    assert jobs_app.stack.worker_events() == []  # nothing requeued after the last
    assert jobs_app.stack.keys() == [layout.record_key(job_id), layout.notice_key(job_id)]
    notice = json.loads(jobs_app.stack.store().get_bytes(layout.notice_key(job_id)))
    assert notice["status"] == "failed"


def test_given_a_claim_released_for_want_of_a_model_when_the_retry_is_lost_then_requeued(
        jobs_app):
    job_id, _, event = uploaded(jobs_app)
    with pytest.raises(ModelUnavailable):
        jobs_app.deliver(event, ready=no_model)
    released_at = parse_iso(record(jobs_app, job_id).updated_at)

    assert swept(jobs_app, released_at + GRACE) == {"waiting": 1}
    assert swept(jobs_app, released_at + GRACE + SECOND) == {"requeued": 1}

    assert jobs_app.deliver(requeued_event(jobs_app, job_id)) == "succeeded"


def test_given_no_model_at_every_attempt_then_abandoned_and_the_upload_deleted(jobs_app):
    job_id, _, event = uploaded(jobs_app)
    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(ModelUnavailable):
            jobs_app.deliver(event, ready=no_model)
        counts = swept(jobs_app, parse_iso(record(jobs_app, job_id).updated_at) + GRACE + SECOND)
        if counts == {"requeued": 1}:
            event = requeued_event(jobs_app, job_id)

    assert counts == {"abandoned": 1}
    job = jobs_app.status(job_id)[1]
    assert (job["status"], job["error"]["Code"]) == ("failed", "JobAbandoned")
    assert "model was not available" in job["error"]["Message"]
    assert jobs_app.stack.keys() == [layout.record_key(job_id)]


def test_given_a_stage_that_keeps_uploads_when_a_job_is_abandoned_then_its_upload_is_kept(
        jobs_app):
    job_id, _, event = uploaded(jobs_app)
    keeping = dataclasses.replace(jobs_app.settings(), keep_uploads_days=30)
    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(Died):
            jobs_app.deliver(event, classify=dies)
        stale = parse_iso(record(jobs_app, job_id).claimed_at) + STALE_CLAIM + SECOND
        if swept(jobs_app, stale, settings=keeping) == {"released": 1}:
            event = requeued_event(jobs_app, job_id)

    assert record(jobs_app, job_id).error["Code"] == "JobAbandoned"
    assert jobs_app.stack.keys() == [layout.record_key(job_id), layout.upload_key(job_id)]


def test_given_a_marker_without_a_record_then_deleted_once_past_the_grace(jobs_app):
    marker = layout.pending_key("C" * 32)
    jobs_app.stack.s3.put_object(Bucket=jobs_app.stack.bucket, Key=marker, Body=b"")
    written = jobs_app.stack.store().info(marker).last_modified

    assert swept(jobs_app, written + GRACE) == {"waiting": 1}  # maybe a job being created
    assert swept(jobs_app, written + GRACE + SECOND) == {"forgotten": 1}

    assert jobs_app.stack.keys() == []


def test_given_a_final_job_whose_marker_stayed_then_the_marker_is_deleted(jobs_app):
    answer = jobs_app.job("image/png", 1000)
    store = jobs_app.stack.store()
    stored = store.read(answer["job_id"])
    # the final record written, the marker's delete lost (the write alone, as S3 saw it)
    jobs_app.stack.s3.put_object(Bucket=jobs_app.stack.bucket,
                                 Key=layout.record_key(answer["job_id"]),
                                 Body=stored.job.moved("failed", error={"Code": "X",
                                                                        "Message": "x"}).to_json())

    assert swept(jobs_app, now()) == {"cleaned": 1}

    assert jobs_app.stack.keys() == [layout.record_key(answer["job_id"])]


class RacingStore(JobStore):
    """A store whose first read of `job_id` is followed, before the sweeper can write, by a
    worker's claim of the same job: a real conditional write in between."""

    def __init__(self, s3, bucket, job_id):
        super().__init__(s3, bucket)
        self.job_id, self.raced = job_id, False

    def read(self, job_id):
        stored = super().read(job_id)
        if stored is not None and job_id == self.job_id and not self.raced:
            self.raced = True
            assert super().write(stored, stored.job.moved(
                "queued", attempts=1, claimed_at=iso(now()))) is not None
        return stored


@pytest.mark.parametrize("moment", ["expired", "stale"])
def test_given_a_worker_that_moves_the_job_first_when_swept_then_the_sweeper_skips_it(
        jobs_app, moment):
    body = PNG_CARDIOMEGALY.read_bytes()
    answer = jobs_app.job("image/png", len(body))
    job_id = answer["job_id"]
    if moment == "stale":
        assert upload(answer["upload"], body).status_code == 204
        with pytest.raises(Died):
            jobs_app.deliver(jobs_app.stack.worker_events()[0], classify=dies)
    at = parse_iso(answer["upload"]["expires_at"]) + STALE_CLAIM * 2
    racing = RacingStore(jobs_app.stack.s3, jobs_app.stack.bucket, job_id)

    assert swept(jobs_app, at, store=racing) == {"skipped": 1}

    job = record(jobs_app, job_id)
    assert (job.status, job.error) == ("queued", None)  # the worker's write stands
    assert jobs_app.stack.worker_events() == []


def test_given_a_sweep_then_one_log_line_of_counts_naming_no_job(jobs_app, capsys):
    answer = jobs_app.job("image/png", 1000, notify=NOTIFY)
    capsys.readouterr()

    counts = sweep(jobs_app.settings(), jobs_app.stack.store(),
                   now=parse_iso(answer["upload"]["expires_at"]) + GRACE + SECOND)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["sweep"]
    assert lines[0]["counts"] == counts and counts["expired"] == 1
    text = json.dumps(lines)
    assert answer["job_id"] not in text and NOTIFY["email"] not in text


def test_given_the_scheduled_function_when_it_runs_then_it_sweeps_the_stages_bucket(
        jobs_app, capsys):
    waiting = jobs_app.job("image/png", 1000)["job_id"]
    ended = jobs_app.job("image/png", 1000)["job_id"]
    stored = jobs_app.stack.store().read(ended)
    jobs_app.stack.s3.put_object(Bucket=jobs_app.stack.bucket, Key=layout.record_key(ended),
                                 Body=stored.job.moved("failed").to_json())  # marker left
    event = {"version": "0", "account": "123456789012", "region": "us-east-1",
             "detail": {}, "detail-type": "Scheduled Event", "source": "aws.events",
             "time": iso(now()), "id": "e1", "resources": []}
    capsys.readouterr()

    jobs_app.module.job_sweeper(event, None)

    assert jobs_app.stack.keys() == sorted([layout.record_key(waiting), layout.record_key(ended),
                                            layout.pending_key(waiting)])
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert (line["counts"]["cleaned"], line["counts"]["waiting"]) == (1, 1)
