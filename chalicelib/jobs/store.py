"""The jobs bucket through an S3 client (passed in): job records read with their ETag and
written only if nobody wrote since (If-Match), or only if absent (If-None-Match: *). A lost
race is a normal answer (None/False), never an exception: the caller re-reads or steps aside.
S3 gives these conditional writes since 2024; moto 5.2.5 honours both headers."""
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Iterator, Optional

from chalicelib.errors import JobsUnavailable
from chalicelib.jobs import layout
from chalicelib.jobs.records import Job

# What S3 answers when a condition fails (412), or when If-Match names a key that is gone.
LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412")
# What S3 answers a HEAD (or a copy) of an object that is not there.
MISSING = ("NoSuchKey", "404", "NotFound")
# The user metadata a requeued object carries: how many times it was requeued.
REQUEUED = "requeued"


@dataclass(frozen=True)
class Stored:
    job: Job
    etag: str


@contextlib.contextmanager
def reachable(bucket: str) -> Iterator[None]:
    """S3 failures that are not the request's fault (no credentials, no such bucket, access
    denied, no network) as JobsUnavailable, a JSON 503 that names the bucket, never a 500."""
    from botocore.exceptions import BotoCoreError, ClientError
    try:
        yield
    except ClientError as error:
        raise JobsUnavailable(f"The jobs bucket {bucket!r} could not be used "
                              f"({error_code(error) or 'error'}): check XRAY_JOBS_BUCKET and the "
                              "function's role") from None
    except BotoCoreError as error:
        raise JobsUnavailable(f"The jobs bucket {bucket!r} could not be reached "
                              f"({type(error).__name__}): check XRAY_JOBS_BUCKET, the "
                              "credentials and the network (locally, run scripts/serve)") from None


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD tells of an object (never its bytes)."""
    etag: str
    size: int
    last_modified: datetime
    metadata: Dict[str, str]

    @property
    def requeues(self) -> int:
        """How many times requeue() copied this object onto itself (0: never)."""
        raw = self.metadata.get(REQUEUED, "")
        return int(raw) if raw.isdigit() else 0


def error_code(error: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


class JobStore:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    # records
    def create(self, job: Job) -> None:
        """A new record and its pending marker; the id is fresh, so the record cannot exist."""
        self.s3.put_object(Bucket=self.bucket, Key=layout.pending_key(job.job_id), Body=b"")
        self.s3.put_object(Bucket=self.bucket, Key=layout.record_key(job.job_id),
                           Body=job.to_json(), ContentType="application/json",
                           IfNoneMatch="*")

    def read(self, job_id: str) -> Optional[Stored]:
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=layout.record_key(job_id))
        except Exception as error:
            if error_code(error) in ("NoSuchKey", "404"):
                return None
            raise
        return Stored(job=Job.from_json(got["Body"].read()), etag=got["ETag"].strip('"'))

    def write(self, stored: Stored, job: Job) -> Optional[Stored]:
        """Replaces the record read as `stored` with `job` if nobody wrote it since; None when
        somebody did (or deleted it). A final job's pending marker goes."""
        try:
            put = self.s3.put_object(Bucket=self.bucket, Key=layout.record_key(job.job_id),
                                     Body=job.to_json(), ContentType="application/json",
                                     IfMatch=f'"{stored.etag}"')
        except Exception as error:
            if error_code(error) in LOST_RACE:
                return None
            raise
        if job.final:
            self.delete_object(layout.pending_key(job.job_id))
        return Stored(job=job, etag=put["ETag"].strip('"'))

    def delete(self, job_id: str) -> bool:
        """Everything of the job, now: record, marker, upload, notice and claims. False when
        there was no such job."""
        if self.read(job_id) is None:
            return False
        keys = [layout.upload_key(job_id), layout.notice_key(job_id),
                layout.pending_key(job_id), layout.record_key(job_id)]
        keys += list(self.keys(layout.notified_key(job_id, "")))
        for key in keys:
            self.delete_object(key)
        return True

    def pending(self) -> Iterator[str]:
        """The ids of the jobs that are not final yet."""
        for key in self.keys(layout.PENDING):
            job_id = key[len(layout.PENDING):]
            if layout.valid_job_id(job_id):
                yield job_id

    # objects
    def claim(self, key: str, body: bytes = b"") -> bool:
        """Writes `key` only if absent: True for the one caller that wrote it."""
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
        except Exception as error:
            if error_code(error) in LOST_RACE:
                return False
            raise
        return True

    def info(self, key: str) -> Optional[ObjectInfo]:
        """The object's ETag, size, LastModified and user metadata; None if it is not there."""
        try:
            got = self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            if error_code(error) in MISSING:
                return None
            raise
        return ObjectInfo(etag=got["ETag"].strip('"'), size=int(got["ContentLength"]),
                          last_modified=got["LastModified"],
                          metadata=dict(got.get("Metadata") or {}))

    def get_bytes(self, key: str, etag: Optional[str] = None) -> Optional[bytes]:
        """The object's bytes (only the version with this ETag, when given); None if gone or
        replaced."""
        extra = {"IfMatch": f'"{etag}"'} if etag else {}
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)
        except Exception as error:
            if error_code(error) in LOST_RACE:
                return None
            raise
        return bytes(got["Body"].read())

    def put(self, key: str, body: bytes, content_type: str = "application/json") -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def delete_object(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def keys(self, prefix: str) -> Iterator[str]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=prefix):
            for item in page.get("Contents", ()):
                yield item["Key"]

    def requeue(self, key: str, attempt: int) -> bool:
        """Copies the object onto itself with new metadata (REQUEUED = attempt): S3 emits a new
        Object Created event, so the worker sees it again through the normal trigger. The bytes
        stay; so does the ETag, except for a multipart upload's (a batch input copied with
        `aws s3 cp`), which becomes its MD5. False when the object is gone."""
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
            self.s3.copy_object(Bucket=self.bucket, Key=key,
                                CopySource={"Bucket": self.bucket, "Key": key},
                                MetadataDirective="REPLACE",
                                ContentType=head.get("ContentType") or "application/octet-stream",
                                Metadata={REQUEUED: str(attempt)})
        except Exception as error:
            if error_code(error) in MISSING:
                return False
            raise
        return True
