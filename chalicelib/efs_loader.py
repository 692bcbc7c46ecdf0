"""The loader function (`efs_loader`): puts an archive from S3 onto the EFS file system, verified,
and then (on request) switches the pointer to it. It runs inside the VPC with EFS mounted,
invoked by `python -m vendor_efs.ship`; the API function never writes to EFS. ("Loader" means
this function only; the model is *loaded* by inference.lazy, which has no loader of its own.)

    runtime archive -> <root>/runtime/<id>/                 pointer: <root>/packages
    model archive   -> <root>/models/<name>/<version>/      pointer: <root>/models/current

Each archive carries its listing, `.efs-manifest.json` (every file's sha256; the file keeps that
name on EFS). The archive's own sha256 is checked while it streams from S3 (nothing is staged
in /tmp), then every extracted file; only a fully verified tree is renamed into place, and
installed versions are never overwritten.
"""
import hashlib
import json
import os
import re
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Dict, Optional, cast

LISTING = ".efs-manifest.json"
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class LoadRejected(Exception):
    """The archive is not installed; the message says why. Nothing on EFS changed."""


class _HashingReader:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream, self.sha256, self.size = stream, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def destination(efs_root: Path, listing: Dict[str, Any]) -> Path:
    parts = ([listing["id"]] if listing["kind"] == "runtime"
             else [listing["name"], listing["version"]])
    if listing["kind"] not in ("runtime", "model") or not all(
            isinstance(p, str) and _SAFE_PART.match(p) for p in parts):
        raise LoadRejected(f"bad archive identity {listing.get('kind')}/{parts}")
    base = efs_root / ("runtime" if listing["kind"] == "runtime" else "models")
    return base.joinpath(*parts)


def install(stream: BinaryIO, expected_sha256: str, efs_root: Path, use: bool) -> Dict[str, Any]:
    staging = efs_root / ".staging" / uuid.uuid4().hex
    staging.mkdir(parents=True)
    try:
        reader = _HashingReader(stream)
        with tarfile.open(fileobj=cast(BinaryIO, reader), mode="r|gz") as archive:
            archive.extractall(staging, filter="data")  # no absolute paths, links out, devices
        while reader.read(1 << 20):  # hash any trailing bytes too
            pass
        if reader.sha256.hexdigest() != expected_sha256:
            raise LoadRejected(f"archive sha256 {reader.sha256.hexdigest()[:12]}... is not the "
                               f"uploaded {expected_sha256[:12]}... (corrupted in transit?)")
        listing = json.loads((staging / LISTING).read_text())
        _verify(staging, listing["files"])
        target = destination(efs_root, listing)
        if target.exists():
            _verify(target, listing["files"])  # the same version again: fine if identical
            shutil.rmtree(staging)
            installed = False
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, target)
            installed = True
    except (tarfile.TarError, OSError, ValueError, KeyError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise LoadRejected(f"archive rejected: {type(error).__name__}: {error}") from None
    except LoadRejected:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if use:
        _point(efs_root, listing, target)
    return {"target": str(target.relative_to(efs_root)), "installed": installed,
            "files": len(listing["files"]), "bytes": reader.size,
            "sha256": expected_sha256, "verified": True, "current": use}


def _verify(tree: Path, files: Dict[str, str]) -> None:
    present = {str(p.relative_to(tree)) for p in tree.rglob("*")
               if (p.is_file() or p.is_symlink()) and p.name != LISTING}
    if present != set(files):
        extra, missing = sorted(present - set(files)), sorted(set(files) - present)
        raise LoadRejected(f"files differ from the listing: extra {extra[:3]}, "
                           f"missing {missing[:3]}")
    for name, sha in files.items():
        if file_sha256(tree / name) != sha:
            raise LoadRejected(f"{name} does not match its sha256")


def _point(efs_root: Path, listing: Dict[str, Any], target: Path) -> None:
    from chalicelib.inference.store import point_current
    if listing["kind"] == "model":
        point_current(efs_root / "models", target)
        return
    link, temporary = efs_root / "packages", efs_root / f".packages.{uuid.uuid4().hex}"
    if link.exists() and not link.is_symlink():
        raise LoadRejected(f"{link} is a real folder, not a link: move it aside once")
    os.symlink(os.path.relpath(target, efs_root), temporary)
    os.replace(temporary, link)


def handle(event: Dict[str, Any], efs_root: Path, s3: Optional[Any] = None) -> Dict[str, Any]:
    """The Lambda event {"bucket", "key", "sha256", "use"} -> the verification report."""
    if s3 is None:
        import boto3
        s3 = boto3.client("s3")
    body = s3.get_object(Bucket=event["bucket"], Key=event["key"])["Body"]
    try:
        return install(body, event["sha256"], efs_root, bool(event.get("use")))
    except LoadRejected as error:
        return {"verified": False, "error": str(error)}
