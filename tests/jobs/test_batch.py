"""Bucket batches on a moto server: objects put under batch/<name>/ emit the events the worker's
rule delivers; each input becomes results/<name>/<file>.json and the last one writes
_summary.json. Repeated events change nothing; lost ones are requeued by the sweeper."""
import json
from datetime import timedelta

import pytest

from chalicelib.jobs import layout
from chalicelib.jobs.sweeper import MAX_ATTEMPTS, STALE_CLAIM, sweep
from tests.jobs.conftest import without_timings
from tests.support.fixtures import DCM_MONO2, PNG_CARDIOMEGALY

NAME = "ward-7.2024-05"
CORRUPT = b"\x89PNG\r\n\x1a\n" + b"\0garbage" * 64
FILES = {"a.png": PNG_CARDIOMEGALY.read_bytes(), "b.dcm": DCM_MONO2.read_bytes(),
         "c.png": CORRUPT}
SECOND = timedelta(seconds=1)


def put_inputs(jobs_app, files=FILES):
    """The files dropped into batch/NAME/: {file: its event}."""
    for file, body in files.items():
        jobs_app.stack.s3.put_object(Bucket=jobs_app.stack.bucket,
                                     Key=f"{layout.BATCH}{NAME}/{file}", Body=body)
    events = jobs_app.stack.worker_events()
    return {layout.batch_of(e["detail"]["object"]["key"])[1]: e for e in events}


def result(jobs_app, file):
    raw = jobs_app.stack.store().get_bytes(layout.result_key(NAME, file))
    return None if raw is None else json.loads(raw)


def summary(jobs_app):
    raw = jobs_app.stack.store().get_bytes(layout.summary_key(NAME))
    return None if raw is None else json.loads(raw)


def snapshot(jobs_app):
    """Every object of results/ with its ETag."""
    s3 = jobs_app.stack.s3
    return {key: s3.head_object(Bucket=jobs_app.stack.bucket, Key=key)["ETag"]
            for key in jobs_app.stack.keys(layout.RESULTS)}


def test_given_three_inputs_when_their_events_are_handled_then_three_results_and_a_summary(
        jobs_app):
    events = put_inputs(jobs_app)
    assert sorted(events) == sorted(FILES)

    outcomes = {file: jobs_app.deliver(events[file]) for file in sorted(events)}

    assert outcomes == {"a.png": "succeeded", "b.dcm": "succeeded", "c.png": "failed"}
    assert jobs_app.stack.keys() == sorted(
        [layout.result_key(NAME, f) for f in FILES] + [layout.summary_key(NAME)])  # inputs gone
    for file, body in FILES.items():
        got = result(jobs_app, file)
        assert got["file"] == file
        assert got["source_etag"] == events[file]["detail"]["object"]["eTag"]
        status, sync = jobs_app.classify(body, "application/octet-stream")
        if status == 200:
            assert got["status"] == "succeeded"
            assert without_timings(got["result"]) == without_timings(sync)
        else:
            assert (got["status"], got["error"]) == ("failed", sync)
    counts = summary(jobs_app)
    assert (counts["batch"], counts["total"], counts["succeeded"], counts["failed"]) == \
        (NAME, 3, 2, 1)
    assert counts["models"] == [f"{result(jobs_app, 'a.png')['result']['model']['name']} "
                                f"{result(jobs_app, 'a.png')['result']['model']['version']}"]
    positives = {}
    for file in ("a.png", "b.dcm"):
        for label in result(jobs_app, file)["result"]["positive"]:
            positives[label] = positives.get(label, 0) + 1
    assert counts["positives"] == dict(sorted(positives.items()))


def test_given_a_batch_when_an_input_has_no_result_yet_then_no_summary(jobs_app):
    events = put_inputs(jobs_app)

    jobs_app.deliver(events["a.png"])
    jobs_app.deliver(events["c.png"])

    assert summary(jobs_app) is None
    jobs_app.deliver(events["b.dcm"])
    assert summary(jobs_app)["total"] == 3


def test_given_a_finished_batch_when_an_event_comes_again_then_nothing_changes(jobs_app):
    events = put_inputs(jobs_app)
    for event in events.values():
        jobs_app.deliver(event)
    before = snapshot(jobs_app)

    again = [jobs_app.deliver(event) for event in events.values()]

    assert again == ["duplicate"] * 3
    assert snapshot(jobs_app) == before
    assert jobs_app.stack.worker_events() == []


def test_given_a_batch_input_whose_event_was_lost_then_the_sweeper_requeues_it(jobs_app):
    events = put_inputs(jobs_app)
    jobs_app.deliver(events["a.png"])
    jobs_app.deliver(events["c.png"])  # b.dcm's event lost
    key = f"{layout.BATCH}{NAME}/b.dcm"
    arrived = jobs_app.stack.store().info(key).last_modified

    assert sweep(jobs_app.settings(), jobs_app.stack.store(),
                 now=arrived + STALE_CLAIM)["batch_requeued"] == 0
    counts = sweep(jobs_app.settings(), jobs_app.stack.store(), now=arrived + STALE_CLAIM + SECOND)

    assert counts["batch_requeued"] == 1
    (event,) = jobs_app.stack.worker_events()
    assert event["detail"]["object"]["key"] == key
    assert jobs_app.deliver(event) == "succeeded"
    assert summary(jobs_app)["total"] == 3


def test_given_an_input_never_classified_then_abandoned_and_a_late_event_still_counts(
        jobs_app):
    events = put_inputs(jobs_app, {"a.png": FILES["a.png"]})
    key = f"{layout.BATCH}{NAME}/a.png"
    store = jobs_app.stack.store()
    latest = events["a.png"]
    for requeue in range(1, MAX_ATTEMPTS + 1):  # every delivery lost
        at = store.info(key).last_modified + STALE_CLAIM + SECOND
        assert sweep(jobs_app.settings(), store, now=at)["batch_requeued"] == 1
        (latest,) = jobs_app.stack.worker_events()
        assert store.info(key).requeues == requeue

    at = store.info(key).last_modified + STALE_CLAIM + SECOND
    assert sweep(jobs_app.settings(), store, now=at)["batch_abandoned"] == 1

    abandoned = result(jobs_app, "a.png")
    assert (abandoned["status"], abandoned["error"]["Code"]) == ("failed", "JobAbandoned")
    assert (summary(jobs_app)["failed"], summary(jobs_app)["succeeded"]) == (1, 0)
    assert jobs_app.stack.worker_events() == []
    assert sweep(jobs_app.settings(), store, now=at + STALE_CLAIM)["batch_abandoned"] == 0
    # the last requeue's event was only late: it classifies the input after all
    assert jobs_app.deliver(latest) == "succeeded"
    assert result(jobs_app, "a.png")["status"] == "succeeded"
    assert (summary(jobs_app)["failed"], summary(jobs_app)["succeeded"]) == (0, 1)
    assert jobs_app.stack.keys(layout.BATCH) == []


@pytest.mark.parametrize("key", [f"{layout.BATCH}{NAME}/", "batch/no name/x.png",
                                 f"{layout.BATCH}{NAME}/sub/"])
def test_given_keys_that_are_no_batch_input_then_neither_worker_nor_sweeper_acts(jobs_app, key):
    jobs_app.stack.s3.put_object(Bucket=jobs_app.stack.bucket, Key=key, Body=b"")
    events = jobs_app.stack.worker_events()

    outcomes = [jobs_app.deliver(e) for e in events]
    counts = sweep(jobs_app.settings(), jobs_app.stack.store(),
                   now=jobs_app.stack.store().info(key).last_modified + STALE_CLAIM * 4)

    assert outcomes == ["ignored"]
    assert {action: n for action, n in counts.items() if n} == {}
    assert jobs_app.stack.keys() == [key]
