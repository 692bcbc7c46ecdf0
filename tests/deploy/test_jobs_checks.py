"""The jobs path's account checks (deploy/aws_checks.py), in process against moto: the SES
sender's verification and the webhook secret. The real command refuses both in test_errors.py."""
import boto3
import pytest
from moto import mock_aws

from deploy.aws_checks import check_ses_sender, check_webhook_secret
from deploy.errors import DeployError

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
