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
    from botocore.config import Config
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    if service != "s3":
        return boto3.client(service, region_name=region)
    if os.environ.get(ENDPOINT_URL):
        return boto3.client("s3", region_name=region,
                            config=Config(signature_version="s3v4",
                                          s3={"addressing_style": "path"}))
    suffix = ".cn" if region.startswith("cn-") else ""
    return boto3.client("s3", region_name=region,
                        endpoint_url=f"https://s3.{region}.amazonaws.com{suffix}",
                        config=Config(signature_version="s3v4",
                                      s3={"addressing_style": "virtual"}))
