"""The jobs bucket's configuration (deploy/jobs_bucket.py), both renderings: put on a bucket by
the deploy path (in process against moto's S3), and as the CloudFormation resource of the
package path, from the one definition. The real command puts it in test_moto.py; the template's
resource is linted in test_package.py."""
import logging

import boto3
import pytest
from moto import mock_aws

from chalicelib.jobs import layout
from deploy import jobs_bucket
from deploy.settings import load_stage
from tests.support.moto_shim import moto_shim
from tests.support.packaging import USER_VALUES
from tests.support.project import set_stage

REGION = "eu-west-1"
BUCKET = USER_VALUES["environment_variables"]["XRAY_JOBS_BUCKET"]
API_ID = "a1b2c3d4e5"
API_ORIGIN = f"https://{API_ID}.execute-api.{REGION}.amazonaws.com"
DEV_ORIGINS = ["http://localhost:3000", "http://127.0.0.1:3000"]  # the committed dev stage's


def stage(project, stage_name: str = "dev", **env):
    set_stage(project, stage_name, **USER_VALUES)
    if env:
        set_stage(project, stage_name, environment_variables=env)
    return load_stage(project, stage_name)


@pytest.fixture
def s3():
    with mock_aws(), moto_shim([], []):  # the shim: moto's answer omits EventBridge
        yield boto3.client("s3", region_name=REGION)


def read_back(s3) -> dict:
    notifications = s3.get_bucket_notification_configuration(Bucket=BUCKET)
    notifications.pop("ResponseMetadata")
    return {
        "encryption": s3.get_bucket_encryption(Bucket=BUCKET)[
            "ServerSideEncryptionConfiguration"]["Rules"][0][
            "ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "public": s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"],
        "expiry": {r["Filter"]["Prefix"]: r["Expiration"]["Days"]
                   for r in s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
                   if "Expiration" in r},
        "cors": s3.get_bucket_cors(Bucket=BUCKET)["CORSRules"],
        "notifications": notifications,
    }


def test_a_missing_bucket_is_created_in_the_functions_region_and_configured_once(project, s3,
                                                                                 caplog):
    caplog.set_level(logging.INFO, logger="deploy")
    settings = stage(project)
    assert jobs_bucket.ensure_bucket(s3, settings, REGION) is True
    assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == REGION
    assert jobs_bucket.ensure_bucket(s3, settings, REGION) is False  # there now
    put = jobs_bucket.put_configuration(s3, settings, API_ID, REGION)
    assert set(put) >= {"public access block", "lifecycle", "cors", "eventbridge"}
    state = read_back(s3)
    assert state["encryption"] == "AES256"
    assert state["public"] == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                               "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    assert state["expiry"] == {"jobs/": 7, "pending/": 7, "notices/": 7, "notified/": 7,
                               "results/": 7, "uploads/": 1, "batch/": 1}
    assert set(state["expiry"]) == set(layout.RESULT_PREFIXES + layout.UPLOAD_PREFIXES)
    (cors,) = state["cors"]
    assert cors["AllowedMethods"] == ["POST"]
    assert cors["AllowedOrigins"] == [API_ORIGIN] + DEV_ORIGINS
    assert state["notifications"] == {"EventBridgeConfiguration": {}}
    # a second deploy finds everything in place and sends nothing
    assert jobs_bucket.put_configuration(s3, settings, API_ID, REGION) == []
    assert "all in place: nothing to change" in caplog.text


def test_what_others_configured_on_the_bucket_is_kept(project, s3):
    settings = stage(project)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="audit")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        "QueueConfigurations": [{"Id": "audit", "QueueArn": queue_arn,
                                 "Events": ["s3:ObjectRemoved:*"]}]})
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [
        {"ID": "tidy-multipart", "Status": "Enabled", "Filter": {"Prefix": ""},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
        {"ID": "xray-expire-jobs", "Status": "Enabled", "Filter": {"Prefix": "jobs/"},
         "Expiration": {"Days": 99}}]})  # ours, from an older deploy: replaced
    s3.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": [
        {"ID": "reports", "AllowedMethods": ["GET"], "AllowedOrigins": ["https://r.example"]}]})

    jobs_bucket.put_configuration(s3, settings, API_ID, REGION)
    state = read_back(s3)
    assert [q["Id"] for q in state["notifications"]["QueueConfigurations"]] == ["audit"]
    assert state["notifications"]["EventBridgeConfiguration"] == {}
    rules = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert [r["ID"] for r in rules][0] == "tidy-multipart"
    assert state["expiry"]["jobs/"] == 7 and len(rules) == 1 + 7
    assert [r.get("ID") for r in state["cors"]] == ["xray-browser-uploads", "reports"]
    assert jobs_bucket.put_configuration(s3, settings, API_ID, REGION) == []


def test_kept_uploads_expire_after_the_stages_retention_and_results_after_its_days(project):
    settings = stage(project, XRAY_KEEP_UPLOADS_DAYS="30", XRAY_RESULT_DAYS="3")
    days = {e.prefix: e.days for e in jobs_bucket.expiries(settings)}
    assert days == {"jobs/": 3, "pending/": 3, "notices/": 3, "notified/": 3, "results/": 3,
                    "uploads/": 30, "batch/": 30}


def test_the_cors_origins_are_the_apis_the_public_urls_and_the_stages(project):
    public = stage(project, "prod", XRAY_PUBLIC_URL="https://XRay.Example.org/v1")
    assert jobs_bucket.allowed_origins(public, API_ORIGIN) == [
        API_ORIGIN, "https://xray.example.org"]  # prod: no XRAY_CORS_ORIGINS
    anyone = stage(project, "dev", XRAY_CORS_ORIGINS="*")
    assert jobs_bucket.allowed_origins(anyone, API_ORIGIN) == ["*"]
    assert jobs_bucket.api_origin("abc", "cn-north-1") == \
        "https://abc.execute-api.cn-north-1.amazonaws.com.cn"


def test_the_template_resource_says_the_same_as_the_deploy_path(project):
    settings = stage(project, XRAY_KEEP_UPLOADS_DAYS="30")
    resource = jobs_bucket.cloudformation_resource(settings)
    assert resource["Type"] == "AWS::S3::Bucket"
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
    properties = resource["Properties"]
    assert properties["BucketName"] == BUCKET
    assert properties["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    assert properties["BucketEncryption"] == {"ServerSideEncryptionConfiguration": [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    assert properties["PublicAccessBlockConfiguration"] == jobs_bucket.PUBLIC_ACCESS_BLOCK
    assert {r["Prefix"]: r["ExpirationInDays"]
            for r in properties["LifecycleConfiguration"]["Rules"]} == {
        e.prefix: e.days for e in jobs_bucket.expiries(settings)}
    assert [r["Prefix"] for r in properties["LifecycleConfiguration"]["Rules"]] == [
        r["Filter"]["Prefix"] for r in jobs_bucket.lifecycle_rules(settings)]
    (cors,) = properties["CorsConfiguration"]["CorsRules"]
    assert cors["AllowedMethods"] == ["POST"]
    assert cors["AllowedOrigins"] == [{"Fn::Sub": "https://${RestAPI}.execute-api."
                                                  "${AWS::Region}.${AWS::URLSuffix}"}] + DEV_ORIGINS
