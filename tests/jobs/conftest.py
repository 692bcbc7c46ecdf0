"""What the jobs tests share: one moto server per module holding the jobs stack (emptied before
each test), the app serving the demo model with that stack as its jobs bucket, and the calls a
client and the Lambda runtime make."""
import json
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import pytest

from lambda_sim.context import LambdaContext
from tests.support.jobs import JobsStack, local_jobs
from tests.support.serving import serving

WORKER_TIMEOUT_S = 900  # the job worker's Lambda timeout, as its context tells the worker


@pytest.fixture(scope="module")
def stack():
    with local_jobs() as jobs:
        yield jobs


@pytest.fixture(autouse=True)
def empty_stack(stack):
    """Each test starts from an empty bucket and empty queues (deletes emit no Object Created)."""
    s3 = stack.s3
    for key in stack.keys():
        s3.delete_object(Bucket=stack.bucket, Key=key)
    stack.worker_events()
    stack.notifier_events()


@pytest.fixture(scope="module")
def app_env() -> Dict[str, str]:
    """The stage's variables besides the jobs bucket; a module overrides it."""
    return {}


@dataclass
class JobsApp:
    client: Any      # chalice.test.Client
    module: Any      # app.py
    stack: JobsStack

    def create(self, body: Any) -> Tuple[int, Dict[str, Any]]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = self.client.http.post("/xray/jobs",
                                         headers={"Content-Type": "application/json"},
                                         body=raw)
        return response.status_code, json.loads(response.body)

    def job(self, content_type: str, size: int, notify: Optional[Dict[str, str]] = None,
            **fields: Any) -> Dict[str, Any]:
        request: Dict[str, Any] = {"content_type": content_type, "size": size, **fields}
        if notify:
            request["notify"] = notify
        status, answer = self.create(request)
        assert status == 202, answer
        return answer

    def status(self, job_id: str) -> Tuple[int, Dict[str, Any]]:
        response = self.client.http.get(f"/xray/jobs/{job_id}")
        return response.status_code, json.loads(response.body)

    def report(self, job_id: str, accept: str) -> Any:
        """GET /xray/jobs/{job_id} asking for another format: the whole response."""
        return self.client.http.get(f"/xray/jobs/{job_id}", headers={"Accept": accept})

    def delete(self, job_id: str) -> int:
        return self.client.http.delete(f"/xray/jobs/{job_id}").status_code

    def classify(self, body: bytes, content_type: str) -> Tuple[int, Dict[str, Any]]:
        """The synchronous route's answer for the same bytes."""
        response = self.client.http.post("/xray", headers={"Content-Type": content_type},
                                         body=body)
        return response.status_code, json.loads(response.body)

    def worker(self, **changes: Any):
        """The worker as job_worker makes it for one event (its Lambda context), with
        `classify` or `ready` replaced when a test needs a worker that dies or races."""
        worker = self.module.get_worker(LambdaContext(timeout_s=WORKER_TIMEOUT_S))
        for name, value in changes.items():
            setattr(worker, name, value)
        return worker

    def deliver(self, event: Dict[str, Any], **changes: Any) -> str:
        return self.worker(**changes).handle(event)

    def settings(self):
        return self.module.get_settings().jobs


@pytest.fixture(scope="module")
def jobs_app(demo_store, stack, app_env):
    with serving(demo_store, **stack.env(**app_env)) as client:
        import app as app_module
        yield JobsApp(client=client, module=app_module, stack=stack)


def without_timings(result: Dict[str, Any]) -> Dict[str, Any]:
    """A classification's answer without the time each step took (the rest is deterministic)."""
    return {key: value for key, value in result.items() if key != "timings_ms"}


def findings(result: Dict[str, Any]) -> list:
    return [(f["label"], f["probability"]) for f in result["findings"]]
