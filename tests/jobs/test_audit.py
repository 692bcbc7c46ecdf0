"""The audit trail of jobs: who created, read and deleted a job, and, from the worker, who asked
for the classification it ran, each line naming the job by job_ref and never by its id (the id
is the handle to the result)."""
import json

from chalicelib.observability.audit import job_ref
from tests.support.fixtures import PNG_NOFINDING
from tests.support.jobs import upload

CREATOR = {"kind": "iam", "id": "arn:aws:iam::123456789012:user/ward-7-pacs",
           "api_key_id": None}


def test_given_a_job_when_created_read_and_deleted_then_one_audit_line_each_without_its_id(
        jobs_app, capsys):
    capsys.readouterr()
    answer = jobs_app.job("image/png", 100)
    job_id = answer["job_id"]
    assert jobs_app.status(job_id)[0] == 200
    assert jobs_app.delete(job_id) == 204
    assert jobs_app.status(job_id)[0] == 404
    out = capsys.readouterr().out
    assert job_id not in out
    lines = [json.loads(text) for text in out.splitlines() if text.startswith("{")]
    trail = [(a["action"], a["outcome"], a["status"], a["job_ref"]) for a in lines
             if a.get("event") == "audit"]
    ref = job_ref(job_id)
    assert trail == [("create_job", "done", 202, ref), ("read_job", "done", 200, ref),
                     ("delete_job", "done", 204, ref), ("read_job", "refused", 404, ref)]


def test_given_a_job_created_by_a_principal_when_the_worker_ends_it_then_its_line_names_them(
        jobs_app, capsys):
    body = PNG_NOFINDING.read_bytes()
    service = jobs_app.module.get_job_service()
    answer = service.create(json.dumps({"content_type": "image/png", "size": len(body)}).encode(),
                            "http://localhost", requested_by=CREATOR)
    assert upload(answer["upload"], body).status_code == 204
    (event,) = jobs_app.stack.worker_events()
    capsys.readouterr()
    assert jobs_app.deliver(event) == "succeeded"
    out = capsys.readouterr().out
    assert answer["job_id"] not in out
    (line,) = [json.loads(t) for t in out.splitlines()
               if t.startswith("{") and json.loads(t).get("event") == "audit"]
    model = jobs_app.module.get_model().loaded_manifest().identity()
    assert line["action"] == "classify" and line["via"] == "job"
    assert line["principal"] == CREATOR and line["job_ref"] == job_ref(answer["job_id"])
    assert line["model"] == {name: model[name] for name in ("name", "version", "sha256")}
    assert line["outcome"] == "classified" and line.get("error_code") is None
