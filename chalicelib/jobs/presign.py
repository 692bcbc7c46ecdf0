"""The presigned POST a client uploads a job's file with, straight to S3 (the API never sees the
bytes). The policy pins what may be uploaded: this job's key, the declared content type, exactly
the declared size, and an expiry minutes away. moto does not enforce POST policies, so
`policy_conditions` is what the tests read back to check them."""
import base64
import json
from datetime import datetime, timedelta
from typing import Any, Dict, List

SERVER_SIDE_ENCRYPTION = "AES256"


def presigned_upload(s3: Any, bucket: str, key: str, content_type: str, size: int,
                     expires_s: int, now: datetime) -> Dict[str, Any]:
    """{"method": "POST", "url", "fields", "max_bytes", "expires_at"} for the job's answer."""
    fields = {"Content-Type": content_type, "x-amz-server-side-encryption": SERVER_SIDE_ENCRYPTION}
    conditions: List[Any] = [{"Content-Type": content_type},
                             {"x-amz-server-side-encryption": SERVER_SIDE_ENCRYPTION},
                             ["content-length-range", size, size]]
    post = s3.generate_presigned_post(Bucket=bucket, Key=key, Fields=fields,
                                      Conditions=conditions, ExpiresIn=expires_s)
    from chalicelib.jobs.records import iso
    return {"method": "POST", "url": post["url"], "fields": post["fields"], "max_bytes": size,
            "expires_at": iso(now + timedelta(seconds=expires_s))}


def policy_conditions(fields: Dict[str, str]) -> Dict[str, Any]:
    """The decoded policy document of a presigned POST's fields: {"expiration", "conditions"}."""
    return json.loads(base64.b64decode(fields["policy"]))
