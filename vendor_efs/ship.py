"""Ships what lives on EFS: a built runtime tree or a model version, through S3 and the app's
loader function (chalicelib/efs_loader.py), which verifies and installs it on the file system.

    python -m vendor_efs.ship runtime build/efs/packages --bucket MY-BUCKET --stage dev --use
    python -m vendor_efs.ship model efs-local/models/NAME/VERSION --bucket MY-BUCKET --stage dev \
        --use

Progress is shown while archiving and uploading; the loader's checksum report ends the run.
"""
import argparse
import gzip
import hashlib
import io
import json
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from chalicelib.efs_loader import LISTING, file_sha256
from chalicelib.inference.store import read_manifest
from chalicelib.settings import PROJECT_ROOT
from deploy.chalice_files import function_arns, read_config, stage_value
from deploy.errors import DeployError
from deploy.settings import LOADER

Invoker = Callable[[Dict[str, Any]], Dict[str, Any]]


def listing_for(kind: str, tree: Path) -> Dict[str, Any]:
    files = {str(p.relative_to(tree)): file_sha256(p) for p in sorted(tree.rglob("*"))
             if p.is_file() and p.name != LISTING}
    if not files:
        raise SystemExit(f"{tree} holds no files")
    if kind == "model":
        manifest = read_manifest(tree)  # refuse to ship a model that would not load
        identity = {"name": manifest.name, "version": manifest.version}
    else:
        identity = {"id": hashlib.sha256(json.dumps(files, sort_keys=True).encode())
                    .hexdigest()[:16]}
    return {"kind": kind, **identity, "files": files}


def archive(tree: Path, listing: Dict[str, Any], out: Path,
            progress: Callable[[str], None]) -> str:
    """A gzip'd tar of the tree plus its listing; returns the archive's sha256."""
    total = len(listing["files"])
    with gzip.GzipFile(out, "wb", compresslevel=6, mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = json.dumps(listing, indent=1).encode()
        info = tarfile.TarInfo(LISTING)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for done, name in enumerate(listing["files"], 1):
            tar.add(tree / name, arcname=name, recursive=False)
            if done % 500 == 0 or done == total:
                progress(f"archived {done}/{total} files")
    return file_sha256(out)


def s3_key(listing: Dict[str, Any]) -> str:
    if listing["kind"] == "model":
        return f"efs-upload/models/{listing['name']}/{listing['version']}.tar.gz"
    return f"efs-upload/runtime/{listing['id']}.tar.gz"


def ship(kind: str, tree: Path, bucket: str, use: bool, invoke: Invoker, s3: Any,
         progress: Callable[[str], None] = print) -> Dict[str, Any]:
    listing = listing_for(kind, tree)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "payload.tar.gz"
        sha = archive(tree, listing, path, progress)
        size, sent, shown = path.stat().st_size, [0], [-1]

        def uploaded(chunk: int) -> None:
            sent[0] += chunk
            percent = sent[0] * 100 // max(size, 1)
            if percent // 10 != shown[0] // 10:
                shown[0] = percent
                progress(f"uploaded {percent}% of {size / 1e6:.1f} MB")

        key = s3_key(listing)
        s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": sha}},
                       Callback=uploaded)
    progress(f"s3://{bucket}/{key} uploaded; the loader is verifying and installing it")
    report = invoke({"bucket": bucket, "key": key, "sha256": sha, "use": use})
    if not report.get("verified"):
        raise SystemExit(f"the loader refused the upload: {report.get('error', report)}")
    if report["files"] != len(listing["files"]) or report["sha256"] != sha:
        raise SystemExit(f"the loader installed something else than was sent: {report}")
    return report


def lambda_invoker(stage: str, function: Optional[str]) -> Invoker:
    """Calls the deployed loader synchronously and returns its report."""
    import boto3

    if function is None:
        try:
            function = function_arns(PROJECT_ROOT, stage, [LOADER])[LOADER]
        except DeployError as error:
            raise SystemExit(f"{error} (or pass --function)") from None
    from botocore.config import Config

    # The loader may run for up to its 900 s timeout; botocore's default 60 s read timeout
    # would give up and retry an invoke that is still installing (and is throttled: the
    # loader's reserved concurrency is 1).
    client = boto3.client("lambda", config=Config(read_timeout=960,
                                                  retries={"total_max_attempts": 1}))

    def invoke(payload: Dict[str, Any]) -> Dict[str, Any]:
        answer = client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
        body = json.loads(answer["Payload"].read() or b"{}")
        if answer.get("FunctionError"):
            return {"verified": False, "error": body.get("errorMessage", body)}
        return body
    return invoke


def stage_bucket(stage: str) -> str:
    try:
        bucket = stage_value(read_config(PROJECT_ROOT), stage, "efs_upload_bucket")
    except DeployError as error:
        raise SystemExit(str(error)) from None
    if not bucket or bucket.startswith("REPLACE"):
        raise SystemExit(f"no --bucket, and stages.{stage}.efs_upload_bucket in "
                         f".chalice/config.json is not set")
    return bucket


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["runtime", "model"])
    parser.add_argument("tree", type=Path, help="a runtime tree, or one model version folder")
    parser.add_argument("--bucket", help="the S3 bucket the loader may read (default: the "
                                         "stage's efs_upload_bucket in .chalice/config.json)")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--function", help="the loader's name or ARN (default: from "
                                           ".chalice/deployed/STAGE.json)")
    parser.add_argument("--use", action="store_true", help="switch the pointer to it")
    args = parser.parse_args(argv)
    bucket = args.bucket or stage_bucket(args.stage)
    import boto3
    report = ship(args.kind, args.tree, bucket, args.use,
                  lambda_invoker(args.stage, args.function), boto3.client("s3"),
                  progress=lambda line: print(line, file=sys.stderr))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
