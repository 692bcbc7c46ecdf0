"""The jobs path's account checks (deploy/aws_checks.py), in process against moto: the SES
sender's verification and the webhook secret (the real command refuses both in
test_errors.py); and the read-back of the rules after `chalice deploy` (deploy/triggers.py)."""
import json
import shutil

import boto3
import pytest
from moto import mock_aws

from chalicelib.jobs.events import notifier_pattern, worker_pattern
from deploy.aws_checks import check_ses_sender, check_webhook_secret
from deploy.errors import DeployError
from deploy.settings import load_stage
from deploy.triggers import check_triggers
from tests.support.packaging import USER_VALUES
from tests.support.project import REPO, set_stage

REGION = "eu-west-1"
SENDER = "xray@example.org"


@pytest.fixture
def aws():
    with mock_aws():
        yield lambda service: boto3.client(service, region_name=REGION)


def test_a_verified_address_or_domain_passes_and_neither_is_refused(aws):
    ses = aws("ses")
    with pytest.raises(DeployError) as caught:
        check_ses_sender(ses, "prod", SENDER, REGION)
    message = str(caught.value)
    assert message.startswith(".chalice/config.json stages.prod.environment_variables."
                              "XRAY_SES_SENDER: the sender (an address at example.org) is not "
                              "a verified SES identity in eu-west-1 (not requested)")
    assert SENDER not in message
    ses.verify_email_identity(EmailAddress=SENDER)
    assert check_ses_sender(ses, "prod", SENDER, REGION) == "address"
    # an identity of another region does not count: SES identities are regional
    with pytest.raises(DeployError, match="in us-east-1"):
        check_ses_sender(boto3.client("ses", region_name="us-east-1"), "prod", SENDER,
                         "us-east-1")


def test_a_verified_domain_covers_its_addresses(aws):
    ses = aws("ses")
    ses.verify_domain_identity(Domain="example.org")
    found = ses.get_identity_verification_attributes(Identities=["example.org"])
    if found["VerificationAttributes"].get("example.org", {}).get(
            "VerificationStatus") != "Success":
        pytest.skip("moto reports no verification status for domains")
    assert check_ses_sender(ses, "prod", SENDER, REGION) == "domain example.org"


def test_the_webhook_secret_must_exist_and_not_be_scheduled_for_deletion(aws):
    secrets = aws("secretsmanager")
    with pytest.raises(DeployError, match="no secret hooks in eu-west-1.*create-secret"):
        check_webhook_secret(secrets, "prod", "hooks", REGION)
    arn = secrets.create_secret(Name="hooks", SecretString="whsec_AAAA")["ARN"]
    assert check_webhook_secret(secrets, "prod", "hooks", REGION) == arn
    assert check_webhook_secret(secrets, "prod", arn, REGION) == arn
    secrets.delete_secret(SecretId="hooks", RecoveryWindowInDays=7)
    with pytest.raises(DeployError, match="scheduled for deletion.*restore-secret"):
        check_webhook_secret(secrets, "prod", "hooks", REGION)


def test_the_rule_read_back_refuses_another_buckets_pattern_a_disabled_rule_a_lost_target(
        aws, tmp_path):
    (tmp_path / ".chalice").mkdir()
    shutil.copy(REPO / ".chalice" / "config.json", tmp_path / ".chalice" / "config.json")
    set_stage(tmp_path, "prod", **USER_VALUES)
    settings = load_stage(tmp_path, "prod")
    events = aws("events")
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:chest-xray-prod-"
    arns = {n: arn + n for n in ("job_worker", "job_notifier", "job_sweeper")}
    rules = {n: f"chest-xray-prod-{n}-event" for n in arns}
    for name, rule in rules.items():
        kind = {"ScheduleExpression": "rate(10 minutes)"} if name == "job_sweeper" else {
            "EventPattern": json.dumps((worker_pattern if name == "job_worker"
                                        else notifier_pattern)(settings.jobs_bucket))}
        events.put_rule(Name=rule, **kind)
        events.put_targets(Rule=rule, Targets=[{"Id": "1", "Arn": arns[name]}])
    check_triggers(events, settings, rules, arns)  # as chalice deploy makes them
    events.put_rule(Name=rules["job_worker"],
                    EventPattern=json.dumps(worker_pattern("another-bucket")))
    with pytest.raises(DeployError, match="holds .*another-bucket.*not the stage's"):
        check_triggers(events, settings, rules, arns)
    events.put_rule(Name=rules["job_worker"],
                    EventPattern=json.dumps(worker_pattern(settings.jobs_bucket)))
    events.disable_rule(Name=rules["job_notifier"])
    with pytest.raises(DeployError, match="is DISABLED: enable it"):
        check_triggers(events, settings, rules, arns)
    events.enable_rule(Name=rules["job_notifier"])
    events.remove_targets(Rule=rules["job_sweeper"], Ids=["1"])
    with pytest.raises(DeployError, match="does not target .*job_sweeper"):
        check_triggers(events, settings, rules, arns)
