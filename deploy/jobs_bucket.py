"""The jobs bucket's configuration, defined once and rendered for both deploy paths:

- default encryption SSE-S3 (AES256): the roles (deploy/policy.py) hold no KMS rights, and the
  presigned POST pins AES256 (chalicelib/jobs/presign.py);
- the public access block, all four settings on;
- lifecycle rules: the result prefixes (chalicelib/jobs/layout.RESULT_PREFIXES) expire after
  XRAY_RESULT_DAYS; the upload prefixes (UPLOAD_PREFIXES) after one day, a backstop to the
  deletion once processed, or after XRAY_KEEP_UPLOADS_DAYS when the stage keeps uploads;
  noncurrent versions after one day, so that a versioned bucket keeps no deleted upload;
- CORS: POST (the presigned upload) from the API's own origin
  (https://<rest_api_id>.execute-api.<region>.amazonaws.com), XRAY_PUBLIC_URL's origin when set,
  and XRAY_CORS_ORIGINS;
- EventBridge notifications on: S3 -> EventBridge -> the rules Chalice makes from app.py's
  on_cw_event (chalicelib/jobs/events.py) is the trigger on both paths.

`python -m deploy` (put_configuration) creates the bucket if it is missing, in the functions'
region, and puts each setting that differs, after `chalice deploy` (the CORS rule names the
REST API's id). It merges rather than replaces what is not ours: lifecycle and CORS rules with
other ids are kept, and so are other notification destinations (a bucket has one notification
configuration, which a put replaces as a whole). `python -m deploy.package`
(cloudformation_resource) makes the bucket in the template instead: CloudFormation cannot change
the notification configuration of a bucket it did not create, and the REST API's id is known
there only as a reference (Fn::Sub).
"""
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple, Union

from botocore.exceptions import ClientError

from chalicelib.jobs import layout
from chalicelib.settings import JOBS_BUCKET
from deploy.aws_checks import bucket_region, key
from deploy.errors import DeployError
from deploy.settings import StageSettings

log = logging.getLogger("deploy")

RULE_ID_PREFIX = "xray-"  # lifecycle and CORS rules of ours; others on the bucket are kept
CORS_RULE_ID = f"{RULE_ID_PREFIX}browser-uploads"
LOGICAL_ID = "XrayJobsBucket"
SSE_ALGORITHM = "AES256"
PUBLIC_ACCESS_BLOCK = {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                       "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
NONCURRENT_DAYS = 1
UPLOAD_BACKSTOP_DAYS = 1
CORS_MAX_AGE_S = 3000
# A CloudFormation intrinsic ({"Fn::Sub": ...}) or a plain origin.
Origin = Union[str, Dict[str, Any]]


@dataclass(frozen=True)
class Expiry:
    rule_id: str
    prefix: str
    days: int


def bucket_key(stage: str) -> str:
    return key(stage, f"environment_variables.{JOBS_BUCKET}")


def expiries(settings: StageSettings) -> List[Expiry]:
    """One rule per prefix: results after the result days, uploads after the backstop day or
    the days the stage keeps them."""
    jobs = settings.jobs
    upload_days = jobs.keep_uploads_days or UPLOAD_BACKSTOP_DAYS
    return [Expiry(f"{RULE_ID_PREFIX}expire-{prefix.rstrip('/')}", prefix, days)
            for prefixes, days in ((layout.RESULT_PREFIXES, jobs.result_days),
                                   (layout.UPLOAD_PREFIXES, upload_days))
            for prefix in prefixes]


def api_origin(rest_api_id: str, region: str) -> str:
    suffix = ".cn" if region.startswith("cn-") else ""
    return f"https://{rest_api_id}.execute-api.{region}.amazonaws.com{suffix}"


API_ORIGIN_CFN = {"Fn::Sub": "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}"}


def allowed_origins(settings: StageSettings, api: Origin) -> List[Origin]:
    """The API's origin, XRAY_PUBLIC_URL's, then XRAY_CORS_ORIGINS; ["*"] when those allow any."""
    if "*" in settings.cors_origins:
        return ["*"]
    origins: List[Origin] = [api]
    public = settings.jobs.public_url
    if public:
        scheme, _, rest = public.partition("://")
        origins.append(f"{scheme}://{rest.split('/')[0]}".lower())
    for origin in settings.cors_origins:
        if origin not in origins:
            origins.append(origin)
    return origins


# --- the deploy path: boto3 -------------------------------------------------------------------

def lifecycle_rules(settings: StageSettings) -> List[Dict[str, Any]]:
    return [{"ID": e.rule_id, "Status": "Enabled", "Filter": {"Prefix": e.prefix},
             "Expiration": {"Days": e.days},
             "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS}}
            for e in expiries(settings)]


def cors_rule(origins: Sequence[Origin]) -> Dict[str, Any]:
    # AllowedHeaders "*": the POST policy, not the headers, limits what may be uploaded.
    return {"ID": CORS_RULE_ID, "AllowedMethods": ["POST"], "AllowedOrigins": list(origins),
            "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": CORS_MAX_AGE_S}


def encryption() -> Dict[str, Any]:
    return {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": SSE_ALGORITHM}}]}


def ensure_bucket(s3: Any, settings: StageSettings, region: str) -> bool:
    """Creates the bucket in `region` if no bucket has its name; returns whether it did."""
    bucket, stage = settings.jobs_bucket, settings.stage
    if bucket_region(s3, bucket_key(stage), bucket) is not None:
        return False
    try:
        s3.create_bucket(Bucket=bucket, ObjectOwnership="BucketOwnerEnforced",
                         **({} if region == "us-east-1" else {
                             "CreateBucketConfiguration": {"LocationConstraint": region}}))
    except ClientError as error:
        code = error.response["Error"]["Code"]
        if code == "BucketAlreadyOwnedByYou":
            return False
        if code == "BucketAlreadyExists":
            raise DeployError(f"{bucket_key(stage)}: the name {bucket} is taken by another "
                              "account (bucket names are global): choose another") from None
        raise
    log.info("created the jobs bucket s3://%s in %s", bucket, region)
    return True


def _matches(current: Any, wanted: Any) -> bool:
    """Whether `current` (as S3 returns it) holds everything of `wanted`; S3 may add defaults."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(
            k in current and _matches(current[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(current, list) and len(current) == len(wanted) and all(
            _matches(c, w) for c, w in zip(current, wanted))
    return bool(current == wanted)


def _read(call: Any, missing: Tuple[str, ...], **kwargs: Any) -> Dict[str, Any]:
    try:
        answer = dict(call(**kwargs))
    except ClientError as error:
        if error.response["Error"]["Code"] in missing:
            return {}
        raise
    answer.pop("ResponseMetadata", None)
    return answer


def put_configuration(s3: Any, settings: StageSettings, rest_api_id: str,
                      region: str) -> List[str]:
    """Puts each setting the bucket does not already hold; returns the names of those put."""
    bucket = settings.jobs_bucket
    changed = []

    current = _read(s3.get_bucket_encryption, ("ServerSideEncryptionConfigurationNotFoundError",),
                    Bucket=bucket).get("ServerSideEncryptionConfiguration", {})
    if not _matches(current, encryption()):
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=encryption())
        changed.append("encryption")

    current = _read(s3.get_public_access_block, ("NoSuchPublicAccessBlockConfiguration",),
                    Bucket=bucket).get("PublicAccessBlockConfiguration", {})
    if not _matches(current, PUBLIC_ACCESS_BLOCK):
        s3.put_public_access_block(Bucket=bucket,
                                   PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
        changed.append("public access block")

    rules = _read(s3.get_bucket_lifecycle_configuration, ("NoSuchLifecycleConfiguration",),
                  Bucket=bucket).get("Rules", [])
    wanted = [r for r in rules if not str(r.get("ID", "")).startswith(RULE_ID_PREFIX)] \
        + lifecycle_rules(settings)
    if not _matches(rules, wanted):
        s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                              LifecycleConfiguration={"Rules": wanted})
        changed.append("lifecycle")

    rules = _read(s3.get_bucket_cors, ("NoSuchCORSConfiguration",), Bucket=bucket).get(
        "CORSRules", [])
    ours = cors_rule(allowed_origins(settings, api_origin(rest_api_id, region)))
    wanted = [ours] + [r for r in rules if r.get("ID") != CORS_RULE_ID]
    if not _matches(rules, wanted):
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": wanted})
        changed.append("cors")

    notifications = _read(s3.get_bucket_notification_configuration, (), Bucket=bucket)
    if "EventBridgeConfiguration" not in notifications:
        # the others' destinations are kept: a put replaces the whole configuration
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={**notifications,
                                                      "EventBridgeConfiguration": {}})
        changed.append("eventbridge")

    log.info("jobs bucket s3://%s: %s", bucket,
             f"put {', '.join(changed)}" if changed else "all in place: nothing to change")
    return changed


# --- the package path: CloudFormation ----------------------------------------------------------

def cloudformation_resource(settings: StageSettings) -> Dict[str, Any]:
    """An AWS::S3::Bucket named XRAY_JOBS_BUCKET (the functions find it by that name). Kept when
    the stack is deleted or the bucket replaced: it holds the jobs' results."""
    origins = allowed_origins(settings, API_ORIGIN_CFN)
    return {
        "Type": "AWS::S3::Bucket",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketName": settings.jobs_bucket,
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": SSE_ALGORITHM}}]},
            "PublicAccessBlockConfiguration": dict(PUBLIC_ACCESS_BLOCK),
            "LifecycleConfiguration": {"Rules": [
                {"Id": e.rule_id, "Status": "Enabled", "Prefix": e.prefix,
                 "ExpirationInDays": e.days,
                 "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS}}
                for e in expiries(settings)]},
            "CorsConfiguration": {"CorsRules": [{
                "Id": CORS_RULE_ID, "AllowedMethods": ["POST"], "AllowedOrigins": origins,
                "AllowedHeaders": ["*"], "ExposedHeaders": ["ETag"],
                "MaxAge": CORS_MAX_AGE_S}]},
            "NotificationConfiguration": {"EventBridgeConfiguration": {
                "EventBridgeEnabled": True}},
        },
    }
