"""The AWS clients of the jobs path, made one way. boto3 is the Lambda runtime's own (never in
the zip) and is imported only when a job route or function runs.

Presigned uploads are signed with SigV4 against the regional endpoint: a URL on the global
endpoint is redirected for buckets outside us-east-1, and a browser's CORS upload does not
follow redirects. AWS_ENDPOINT_URL (a local moto server) replaces the endpoint, path-style."""
import os
from typing import Any

ENDPOINT_URL = "AWS_ENDPOINT_URL"  # read by botocore itself; the local stack sets it


def client(service: str) -> Any:
    import boto3
    region = _region()
    if service != "s3":
        return boto3.client(service, region_name=region)
    session = boto3.session.Session()
    if session.get_credentials() is None:
        # botocore would make the client, then fail to presign with an AttributeError
        from botocore.exceptions import NoCredentialsError
        raise NoCredentialsError()
    return _s3(region, "s3v4", session)


def upload_origin(bucket: str) -> str:
    """The origin (scheme://host[:port]) of the URL presigned_upload gives for `bucket`'s uploads:
    the upload page's Content-Security-Policy must name it before any job exists. Asked of an
    unsigned twin of the jobs' S3 client (no credentials needed, no request sent), so it is the
    presigner's own addressing: virtual-hosted on the regional endpoint, path-style where
    botocore falls back to it (a dotted bucket name over https), or the local endpoint."""
    from urllib.parse import urlsplit

    from botocore import UNSIGNED

    from chalicelib.jobs import layout
    post = _s3(_region(), UNSIGNED).generate_presigned_post(
        Bucket=bucket, Key=layout.upload_key("0" * 32))
    parts = urlsplit(post["url"])
    return f"{parts.scheme}://{parts.netloc}"


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _s3(region: str, signature_version: Any, session: Any = None) -> Any:
    """session: the one whose credentials were checked (boto3's default session otherwise)."""
    import boto3
    from botocore.config import Config
    make = (session or boto3).client
    if os.environ.get(ENDPOINT_URL):
        return make("s3", region_name=region,
                    config=Config(signature_version=signature_version,
                                  s3={"addressing_style": "path"}))
    suffix = ".cn" if region.startswith("cn-") else ""
    return make("s3", region_name=region,
                endpoint_url=f"https://s3.{region}.amazonaws.com{suffix}",
                config=Config(signature_version=signature_version,
                              s3={"addressing_style": "virtual"}))
