"""The worker that runs the Lambda entry for the fuzzer: an input that does not answer in time
is reported as hung and the worker killed (by its PID) and started anew for the next input."""
from fuzzing.lambda_worker import Request, Worker
from tests.support.fixtures import DCM_J2K, PNG_TINY_RGB


def test_given_an_input_slower_than_the_kill_time_when_asked_then_hung_and_a_new_worker_answers(
        demo_store, tmp_path):
    worker = Worker(demo_store, tmp_path / "worker.log")
    try:
        slow = worker.ask(Request("/xray", "application/dicom", DCM_J2K.read_bytes()), 0.01)
        assert slow.response is None and slow.failure.startswith("hung")
        assert worker.process is None  # killed
        reply = worker.ask(Request("/xray", "image/png", PNG_TINY_RGB.read_bytes()), 120)
        assert reply.response["statusCode"] == 200 and reply.rss_mb > 0 and worker.starts == 2
    finally:
        worker.stop()
