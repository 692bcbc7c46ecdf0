"""The jobs path's three functions in .chalice/config.json and their policies, offline: the
worker in the VPC with a read-only mount, the notifier and the sweeper outside it; the job
variables read by the app's own parser, stage-wide; each role granted exactly the job objects
its code touches. The last tests run the real job code (JobService, Worker) against moto,
record every S3 call it makes, and check each against that function's policy."""
import json
import re
from fnmatch import fnmatchcase

import boto3
import pytest
from chalice.config import Config
from moto import mock_aws

from chalicelib.errors import JobNotFound
from chalicelib.jobs.service import JobService
from chalicelib.jobs.store import JobStore
from chalicelib.jobs.worker import Worker
from chalicelib.service import Classification
from chalicelib.settings import JobSettings, Settings
from deploy.errors import DeployError
from deploy.policy import policy_document
from deploy.settings import load_stage
from tests.support.packaging import USER_VALUES, filled
from tests.support.project import REPO, set_stage

STAGES = ("dev", "prod")
BUCKET = USER_VALUES["environment_variables"]["XRAY_JOBS_BUCKET"]
JOBS_ARN = f"arn:aws:s3:::{BUCKET}"
CONFIG = json.loads((REPO / ".chalice" / "config.json").read_text())


def with_function(project, name: str, stage: str = "dev", **values) -> None:
    """Changes keys of one function's own section (the others are kept)."""
    path = project / ".chalice" / "config.json"
    config = json.loads(path.read_text())
    own = config["stages"][stage]["lambda_functions"][name]
    for key, value in values.items():
        if value is None:
            own.pop(key, None)
        else:
            own[key] = value
    path.write_text(json.dumps(config))


def refused(project, **values) -> str:
    with pytest.raises(DeployError) as caught:
        filled(project, **values)
    return str(caught.value)


# --- the committed stages, as Chalice reads them ---------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
def test_chalice_puts_the_worker_in_the_vpc_and_the_notifier_and_sweeper_outside(stage):
    """Read with Chalice's own Config, as `chalice deploy` reads it: [] is a value (Chalice
    looks a key up with `is not None`), so the stage's subnets do not reach these two."""
    api = Config(chalice_stage=stage, function_name="api_handler", config_from_disk=CONFIG)
    worker = Config(chalice_stage=stage, function_name="job_worker", config_from_disk=CONFIG)
    assert (worker.subnet_ids, worker.security_group_ids) == (api.subnet_ids,
                                                              api.security_group_ids)
    assert worker.lambda_memory_size == api.lambda_memory_size  # the same model
    assert worker.iam_policy_file == f"policy-{stage}-worker.json"
    assert 60 <= worker.lambda_timeout <= 900
    for name in ("job_notifier", "job_sweeper"):
        outside = Config(chalice_stage=stage, function_name=name, config_from_disk=CONFIG)
        assert (outside.subnet_ids, outside.security_group_ids) == ([], [])
        assert outside.lambda_memory_size == 256
        assert outside.iam_policy_file == f"policy-{stage}-{name.split('_')[1]}.json"
    sweeper = Config(chalice_stage=stage, function_name="job_sweeper", config_from_disk=CONFIG)
    assert sweeper.reserved_concurrency == 1


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_names_a_jobs_bucket_and_its_optional_job_variables(stage):
    env = CONFIG["stages"][stage]["environment_variables"]
    assert env["XRAY_JOBS_BUCKET"] == "REPLACE_WITH_YOUR_JOBS_BUCKET"
    assert {k: env[k] for k in ("XRAY_RESULT_DAYS", "XRAY_KEEP_UPLOADS_DAYS", "XRAY_SES_SENDER",
                                "XRAY_WEBHOOK_SECRET_NAME")} == {
        "XRAY_RESULT_DAYS": "7", "XRAY_KEEP_UPLOADS_DAYS": "0", "XRAY_SES_SENDER": "",
        "XRAY_WEBHOOK_SECRET_NAME": ""}  # the defaults, written out; empty = no e-mail/webhooks
    for own in CONFIG["stages"][stage]["lambda_functions"].values():
        assert "environment_variables" not in own


@pytest.mark.parametrize("stage", STAGES)
def test_the_deploy_reads_the_job_variables_as_the_app_does(project, stage):
    settings = filled(project, stage, environment_variables={
        "XRAY_RESULT_DAYS": "3", "XRAY_KEEP_UPLOADS_DAYS": "2",
        "XRAY_SES_SENDER": "xray@example.org"})
    env = json.loads((project / ".chalice" / "config.json").read_text())["stages"][stage][
        "environment_variables"]
    assert settings.jobs == Settings.from_env(env).jobs == JobSettings(
        bucket=BUCKET, result_days=3, keep_uploads_days=2, ses_sender="xray@example.org")
    worker, notifier, sweeper = settings.worker, settings.notifier, settings.sweeper
    assert worker.mounts_efs and worker.in_vpc and not worker.writes_efs
    assert worker.subnet_ids == USER_VALUES["subnet_ids"]
    assert not (notifier.in_vpc or notifier.mounts_efs or sweeper.in_vpc or sweeper.mounts_efs)
    assert (sweeper.reserved_concurrency, sweeper.timeout_s) == (1, 120)


# --- what is refused, each naming its key ------------------------------------------------------

WORKER_KEY = "stages.dev.lambda_functions.job_worker"
NOTIFIER_KEY = "stages.dev.lambda_functions.job_notifier"
SWEEPER_KEY = "stages.dev.lambda_functions.job_sweeper"


@pytest.mark.parametrize("function, values, key", [
    ("job_worker", {"lambda_timeout": 30}, f"{WORKER_KEY}.lambda_timeout"),
    ("job_worker", {"lambda_timeout": 901}, f"{WORKER_KEY}.lambda_timeout"),
    ("job_worker", {"iam_policy_file": "policy-dev.json"}, f"{WORKER_KEY}.iam_policy_file"),
    ("job_worker", {"environment_variables": {  # the same access point, the same mount
        "XRAY_EFS_ROOT": "/mnt/other", "XRAY_PACKAGES_PATH": "/mnt/other/packages",
        "XRAY_MODEL_PATH": "/mnt/other/models/current"}},
     f"{WORKER_KEY}.environment_variables.XRAY_EFS_ROOT"),
    ("job_worker", {"environment_variables": {"XRAY_MODEL_PATH": "/tmp/models/current"}},
     f"{WORKER_KEY}.environment_variables.XRAY_MODEL_PATH"),  # it loads the model too
    ("job_worker", {"subnet_ids": []}, f"{WORKER_KEY}.subnet_ids"),  # it needs EFS
    ("job_notifier", {"lambda_memory_size": 64}, f"{NOTIFIER_KEY}.lambda_memory_size"),
    ("job_notifier", {"iam_policy_file": "policy-dev-worker.json"},
     f"{NOTIFIER_KEY}.iam_policy_file"),
    ("job_notifier", {"security_group_ids": ["sg-0c1d2e3f405162738"]},
     f"{NOTIFIER_KEY}.security_group_ids"),
    ("job_sweeper", {"reserved_concurrency": 2}, f"{SWEEPER_KEY}.reserved_concurrency"),
    ("job_sweeper", {"lambda_timeout": 10}, f"{SWEEPER_KEY}.lambda_timeout"),
    # the job variables are stage-wide: app.py builds the triggers from the stage's
    ("job_worker", {"environment_variables": {"XRAY_JOBS_BUCKET": "another-bucket"}},
     f"{WORKER_KEY}.environment_variables.XRAY_JOBS_BUCKET"),
    ("job_sweeper", {"environment_variables": {"XRAY_SWEEP_MINUTES": "5"}},
     f"{SWEEPER_KEY}.environment_variables.XRAY_SWEEP_MINUTES"),
])
def test_a_malformed_function_value_fails_naming_its_key(project, function, values, key):
    set_stage(project, "dev", **USER_VALUES)
    with_function(project, function, **values)
    with pytest.raises(DeployError, match=re.escape(f"{key}:")):
        load_stage(project, "dev")


@pytest.mark.parametrize("name", ["job_notifier", "job_sweeper"])
def test_a_function_left_to_inherit_the_stages_vpc_is_refused_saying_why(project, name):
    set_stage(project, "dev", **USER_VALUES)
    with_function(project, name, subnet_ids=None, security_group_ids=None)
    with pytest.raises(DeployError) as caught:
        load_stage(project, "dev")
    message = str(caught.value)
    for key in ("subnet_ids", "security_group_ids"):
        assert re.search(rf"stages\.dev\.lambda_functions\.{name}\.{key}: must be \[\] .*"
                         rf"without a NAT gateway.*\(inherited from stages\.dev\.{key}",
                         message), message
    assert len(message.splitlines()) == 1 + 2  # nothing else, nothing reported for the API


def test_a_sweeper_that_outlasts_its_period_is_refused(project):
    set_stage(project, "dev", **USER_VALUES)
    set_stage(project, "dev", environment_variables={"XRAY_SWEEP_MINUTES": "2"})
    with pytest.raises(DeployError, match=re.escape(
            f"{SWEEPER_KEY}.lambda_timeout: must be shorter than the sweep's period "
            "(XRAY_SWEEP_MINUTES=2 minutes)")):
        load_stage(project, "dev")
    with_function(project, "job_sweeper", lambda_timeout=110)
    assert load_stage(project, "dev").sweeper.timeout_s == 110


def test_the_jobs_bucket_must_not_be_the_upload_bucket(project):
    message = refused(project, environment_variables={
        "XRAY_JOBS_BUCKET": USER_VALUES["efs_upload_bucket"]})
    assert "stages.dev.environment_variables.XRAY_JOBS_BUCKET: must not be efs_upload_bucket" \
        in message and "lifecycle" in message and "CORS" in message


@pytest.mark.parametrize("bucket", ["", "Jobs", "ab", "my_jobs", "192.168.1.10", "jobs--x-s3"])
def test_a_jobs_bucket_name_s3_would_refuse_fails_naming_the_key(project, bucket):
    message = refused(project, environment_variables={"XRAY_JOBS_BUCKET": bucket})
    assert "stages.dev.environment_variables.XRAY_JOBS_BUCKET:" in message


@pytest.mark.parametrize("variable, value", [
    ("XRAY_RESULT_DAYS", "a week"), ("XRAY_RESULT_DAYS", "0"), ("XRAY_KEEP_UPLOADS_DAYS", "-1"),
    ("XRAY_SWEEP_MINUTES", "0"), ("XRAY_SES_SENDER", "not-an-address"),
    ("XRAY_PUBLIC_URL", "api.example.org"), ("XRAY_JOB_MAX_BYTES", "200MB"),
])
def test_a_job_variable_the_app_would_refuse_fails_naming_it(project, variable, value):
    message = refused(project, environment_variables={variable: value})
    assert f"stages.dev.environment_variables.{variable}: {variable} must" in message


# --- the policies ----------------------------------------------------------------------------

def statements(document: dict) -> dict:
    return {s["Sid"]: s for s in document["Statement"]}


def s3_grants(document: dict) -> dict:
    """action -> the jobs bucket's prefixes it is granted on."""
    grants = {}
    for statement in document["Statement"]:
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        if str(statement["Action"]).startswith("s3:") and all(
                r.startswith(JOBS_ARN) for r in resources):
            grants[statement["Action"]] = sorted(r[len(JOBS_ARN):].lstrip("/")
                                                 for r in resources)
    return grants


def test_each_function_gets_exactly_its_job_objects(project):
    settings = filled(project)
    documents = {f.name: policy_document(settings, f) for f in settings.functions}
    assert s3_grants(documents["api_handler"]) == {
        "s3:GetObject": ["jobs/*"],
        "s3:PutObject": ["jobs/*", "pending/*", "uploads/*"],  # uploads/: the presigned POST
        "s3:DeleteObject": ["jobs/*", "notices/*", "notified/*", "pending/*", "uploads/*"],
        "s3:ListBucket": [""]}
    assert s3_grants(documents["job_worker"]) == {
        "s3:GetObject": ["batch/*", "jobs/*", "results/*", "uploads/*"],
        "s3:PutObject": ["jobs/*", "notices/*", "results/*"],
        "s3:DeleteObject": ["batch/*", "pending/*", "uploads/*"],
        "s3:ListBucket": [""]}
    assert s3_grants(documents["job_notifier"]) == {
        "s3:GetObject": ["jobs/*", "notices/*"], "s3:PutObject": ["notified/*"],
        "s3:DeleteObject": ["notified/*"], "s3:ListBucket": [""]}
    assert s3_grants(documents["job_sweeper"]) == {
        "s3:GetObject": ["batch/*", "jobs/*", "results/*", "uploads/*"],
        "s3:PutObject": ["batch/*", "jobs/*", "notices/*", "results/*", "uploads/*"],
        "s3:DeleteObject": ["pending/*", "uploads/*"],
        "s3:ListBucket": [""]}
    assert s3_grants(documents["efs_loader"]) == {}  # its upload prefix is another bucket's
    for document in documents.values():  # ListBucket unconditioned: 404, not 403, when missing
        listing = statements(document).get("ListJobsBucket")
        assert listing is None or "Condition" not in listing


def test_the_worker_mounts_read_only_in_the_vpc_and_the_others_have_neither(project):
    settings = filled(project)
    worker = statements(policy_document(settings, settings.worker))
    assert "VpcNetworkInterfaces" in worker
    assert worker["EfsReadOnlyMountThroughAccessPoint"]["Action"] == \
        "elasticfilesystem:ClientMount"
    assert worker["EfsReadOnlyMountThroughAccessPoint"]["Condition"] == {"StringEquals": {
        "elasticfilesystem:AccessPointArn": USER_VALUES["efs_access_point_arn"]}}
    for function in (settings.notifier, settings.sweeper):
        text = json.dumps(policy_document(settings, function))
        assert "ec2:" not in text and "elasticfilesystem" not in text


def test_without_a_sender_or_a_secret_the_notifier_may_send_no_mail_nor_read_secrets(project):
    settings = filled(project)
    text = json.dumps([policy_document(settings, f) for f in settings.functions])
    assert "ses:" not in text and "ssm:" not in text


def test_the_notifier_sends_only_from_the_stages_sender_and_reads_only_its_secret(project):
    settings = filled(project, environment_variables={
        "XRAY_SES_SENDER": "xray@example.org", "XRAY_WEBHOOK_SECRET_NAME": "/chest-xray/webhook"})
    notifier = statements(policy_document(settings, settings.notifier))
    assert notifier["SendJobMail"] == {
        "Sid": "SendJobMail", "Effect": "Allow", "Action": "ses:SendEmail",
        "Resource": "arn:aws:ses:eu-west-1:123456789012:identity/*",
        "Condition": {"StringEquals": {"ses:FromAddress": "xray@example.org"}}}
    assert notifier["ReadWebhookSecret"] == {
        "Sid": "ReadWebhookSecret", "Effect": "Allow", "Action": "ssm:GetParameter",
        "Resource": "arn:aws:ssm:eu-west-1:123456789012:parameter/chest-xray/webhook"}
    others = json.dumps([policy_document(settings, f) for f in settings.functions
                         if f.name != "job_notifier"])
    assert "ses:" not in others and "ssm:" not in others
    flat = filled(project, environment_variables={"XRAY_WEBHOOK_SECRET_NAME": "hooks"})
    assert statements(policy_document(flat, flat.notifier))["ReadWebhookSecret"][
        "Resource"] == "arn:aws:ssm:eu-west-1:123456789012:parameter/hooks"


# --- the policies against what the job code really calls --------------------------------------

# S3 operation -> the IAM actions it needs, on the key it names (CopyObject: source and target)
ACTIONS = {"GetObject": ("s3:GetObject",), "HeadObject": ("s3:GetObject",),
           "PutObject": ("s3:PutObject",), "DeleteObject": ("s3:DeleteObject",),
           "CopyObject": ("s3:GetObject", "s3:PutObject"), "ListObjectsV2": ("s3:ListBucket",)}


def record_calls(client) -> list:
    """(IAM action, resource ARN) of every S3 call the client makes."""
    calls = []

    def record(params, model, context, **_):
        if context.get("is_presign_request"):
            return  # generate_presigned_post signs, calls nothing: counted by the test
        bucket = params["Bucket"]
        if model.name == "ListObjectsV2":
            calls.append(("s3:ListBucket", f"arn:aws:s3:::{bucket}"))
            return
        if model.name == "CopyObject":
            source = params["CopySource"]
            calls.append(("s3:GetObject", f"arn:aws:s3:::{source['Bucket']}/{source['Key']}"))
            calls.append(("s3:PutObject", f"arn:aws:s3:::{bucket}/{params['Key']}"))
            return
        for action in ACTIONS[model.name]:
            calls.append((action, f"arn:aws:s3:::{bucket}/{params['Key']}"))

    client.meta.events.register("provide-client-params.s3.*", record)
    return calls


def allowed(document: dict, action: str, resource: str) -> bool:
    """An unconditioned Allow naming the action and a matching resource (IAM's * and ?)."""
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) \
            else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) \
            else [statement["Resource"]]
        if statement["Effect"] == "Allow" and action in actions and "Condition" not in \
                statement and any(fnmatchcase(resource, r) for r in resources):
            return True
    return False


def created(key: str, etag: str, size: int) -> dict:
    """An EventBridge "Object Created" event, shaped as S3 sends it."""
    return {"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": BUCKET},
                       "object": {"key": key, "etag": etag, "size": size}}}


def classify(body: bytes, content_type: str, max_bytes: int, force: bool) -> Classification:
    """Not the model: this test is about which objects the code touches, not findings."""
    return Classification({"findings": [], "positive": ["Effusion"],
                           "model": {"name": "m", "version": "1"}})


@pytest.fixture
def job_code(project):
    """The stage's settings and, in moto, the job code as the API and the worker run it, each
    with its own recorded client."""
    settings = filled(project, environment_variables={"XRAY_SES_SENDER": "xray@example.org"})
    with mock_aws():
        user = boto3.client("s3", region_name="eu-west-1")
        user.create_bucket(Bucket=BUCKET,
                           CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        clients = {name: boto3.client("s3", region_name="eu-west-1")
                   for name in ("api_handler", "job_worker")}
        calls = {name: record_calls(client) for name, client in clients.items()}
        yield settings, user, clients, calls


def test_the_api_and_the_worker_policies_allow_every_s3_call_their_code_makes(job_code):
    settings, user, clients, calls = job_code
    api_s3, worker_s3 = clients["api_handler"], clients["job_worker"]
    api = JobService(settings.jobs, JobStore(api_s3, BUCKET))
    worker = Worker(settings.jobs, JobStore(worker_s3, BUCKET), classify)
    body = b"\x89PNG not really"
    answers = [api.create(json.dumps({"content_type": "image/png", "size": len(body),
                                      "notify": notify}).encode(), "https://api.example")
               for notify in (None, {"email": "someone@example.org"})]
    for answer in answers:
        key = answer["upload"]["fields"]["key"]
        etag = user.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
        assert worker.handle(created(key, etag, len(body))) == "succeeded"
        assert api.answer(answer["job_id"], None).body["status"] == "succeeded"
    for name in ("a.png", "b.png"):  # a bucket batch: results, then the summary
        key = f"batch/ward-7/{name}"
        etag = user.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
        assert worker.handle(created(key, etag, len(body))) == "succeeded"
    assert user.head_object(Bucket=BUCKET, Key="results/ward-7/_summary.json")
    orphan = "uploads/" + "x" * 32 + "/image"  # an upload whose job is gone: deleted
    etag = user.put_object(Bucket=BUCKET, Key=orphan, Body=body)["ETag"].strip('"')
    assert worker.handle(created(orphan, etag, len(body))) == "orphan"
    for answer in answers:
        api.delete(answer["job_id"])
    with pytest.raises(JobNotFound):  # S3 said 404, not 403
        api.answer(answers[0]["job_id"], None)

    # the presigned POST acts with the API role's rights on the upload's key
    presigned = [("s3:PutObject", f"{JOBS_ARN}/{a['upload']['fields']['key']}") for a in answers]
    for name, made in (("api_handler", calls["api_handler"] + presigned),
                       ("job_worker", calls["job_worker"])):
        document = policy_document(settings, settings.function(name))
        assert made, name
        denied = [call for call in made if not allowed(document, *call)]
        assert not denied, (name, denied)
    # the negative control: the same calls are not all within another function's policy
    for name, other in (("api_handler", "job_notifier"), ("job_worker", "efs_loader")):
        document = policy_document(settings, settings.function(other))
        assert [c for c in calls[name] if not allowed(document, *c)], (name, other)
    made = {action for action, _ in calls["job_worker"]}
    assert made == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"}


def test_the_sweeper_and_the_notifier_policies_allow_every_s3_call_their_code_makes(job_code):
    """Given jobs in each state the sweeper acts on, and notices the notifier sends (one that
    fails and gives its claim back), when their real code runs, then each call is within its
    own function's policy."""
    from datetime import timedelta

    from chalicelib.jobs import layout, notify
    from chalicelib.jobs.records import now
    from chalicelib.jobs.sweeper import sweep
    settings, user, clients, calls = job_code
    api_s3 = clients["api_handler"]
    api = JobService(settings.jobs, JobStore(api_s3, BUCKET))
    sweeper_s3, notifier_s3 = (boto3.client("s3", region_name="eu-west-1") for _ in range(2))
    recorded = {"job_sweeper": record_calls(sweeper_s3),
                "job_notifier": record_calls(notifier_s3)}
    body = b"\x89PNG not really"
    mailed, lost = (api.create(json.dumps({"content_type": "image/png", "size": len(body),
                                           "notify": {"email": "a@example.org"}}).encode(),
                               "https://api.example") for _ in range(2))
    # an upload whose event was lost, a job never uploaded to, a batch input never classified
    user.put_object(Bucket=BUCKET, Key=lost["upload"]["fields"]["key"], Body=body)
    user.put_object(Bucket=BUCKET, Key="batch/ward-7/c.png", Body=body)
    sweeper_store = JobStore(sweeper_s3, BUCKET)
    later = now() + timedelta(hours=2)
    for _ in range(5):  # requeues, then abandons the batch input and expires the other job
        sweep(settings.jobs, sweeper_store, now=later)
    assert api.answer(mailed["job_id"], None).body["status"] == "expired"
    assert user.head_object(Bucket=BUCKET, Key=layout.notice_key(mailed["job_id"]))

    class Ses:
        def __init__(self, fail: bool) -> None:
            self.fail = fail

        def send_email(self, **_):
            if self.fail:
                raise RuntimeError("SES said no")
            return {"MessageId": "1"}

    event = created(layout.notice_key(mailed["job_id"]), "e", 1)
    notifier_store = JobStore(notifier_s3, BUCKET)
    with pytest.raises(notify.NotificationFailed):  # gives the claim back (a delete)
        notify.handle(event, settings.jobs, notifier_store, ses=Ses(fail=True))
    assert notify.handle(event, settings.jobs, notifier_store, ses=Ses(fail=False)) == "sent"

    for name, made in recorded.items():
        document = policy_document(settings, settings.function(name))
        assert made, name
        denied = [call for call in made if not allowed(document, *call)]
        assert not denied, (name, denied)
    assert {a for a, _ in recorded["job_notifier"]} >= {"s3:GetObject", "s3:PutObject",
                                                         "s3:DeleteObject"}
    assert {a for a, _ in recorded["job_sweeper"]} >= {"s3:ListBucket", "s3:GetObject",
                                                        "s3:PutObject", "s3:DeleteObject"}
