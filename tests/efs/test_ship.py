"""Shipping to EFS: archive + upload to S3 (moto) + the loader function installing into a local
folder that stands in for the EFS mount, verified by checksums, with the pointer switched."""
import gzip
import io
import json
import os
import tarfile

import boto3
import pytest
from moto import mock_aws

from chalicelib.efs_loader import LISTING
from chalicelib.inference.lazy import LazyModel
from chalicelib.inference.torch_import import import_torch
from tests.support.fixtures import REPO
from vendor_efs.models.demo import NAME, VERSION
from vendor_efs.ship import ship

BUCKET = "chest-xray-efs-upload"


@pytest.fixture
def s3():
    with mock_aws():
        os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(Bucket=BUCKET,
                             CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield client


@pytest.fixture
def efs(tmp_path):
    return tmp_path / "mnt-xray"


def loader_for(efs_root, s3_client):
    """What the deployed loader does when invoked: the app's own Lambda entry point, in
    process (moto cannot run Lambda code without Docker), reading from moto's S3."""
    import app as app_module

    def invoke(payload):
        os.environ["XRAY_EFS_ROOT"] = str(efs_root)
        app_module.get_settings.cache_clear()
        try:
            return app_module.efs_loader(json.loads(json.dumps(payload)), None)
        finally:
            os.environ.pop("XRAY_EFS_ROOT")
            app_module.get_settings.cache_clear()
    return invoke


def fake_runtime(tmp_path):
    """A stand-in runtime tree with a package the function would import from EFS."""
    tree = tmp_path / "packages"
    (tree / "torch").mkdir(parents=True)
    (tree / "torch" / "__init__.py").write_text("SHIPPED = 'yes'\n")
    (tree / "torch" / "lib").mkdir()
    (tree / "torch" / "lib" / "libfake.so").write_bytes(os.urandom(200_000))
    return tree


def test_a_model_version_is_shipped_verified_and_served(s3, efs, demo_store):
    lines = []
    version = demo_store / "models" / NAME / VERSION
    report = ship("model", version, BUCKET, True, loader_for(efs, s3), s3, lines.append)
    assert report["verified"] and report["installed"] and report["current"]
    assert report["target"] == f"models/{NAME}/{VERSION}"
    assert any("archived 3/3 files" in line for line in lines)  # manifest, weights, graph
    assert any("uploaded 100%" in line for line in lines)
    classifier = LazyModel(efs / "models" / "current", None).get()
    assert classifier.manifest.sha256 == json.loads((version / "manifest.json").read_text())[
        "weights"]["sha256"]

    again = ship("model", version, BUCKET, True, loader_for(efs, s3), s3, lines.append)
    assert again["verified"] and not again["installed"]  # the same version: idempotent


def test_a_runtime_tree_is_shipped_and_the_packages_pointer_switched(s3, efs, tmp_path):
    tree = fake_runtime(tmp_path)
    first = ship("runtime", tree, BUCKET, True, loader_for(efs, s3), s3, lambda _: None)
    assert (efs / "packages").is_symlink() and first["files"] == 2
    assert (efs / "packages" / "torch" / "lib" / "libfake.so").read_bytes() == (
        tree / "torch" / "lib" / "libfake.so").read_bytes()

    (tree / "torch" / "__init__.py").write_text("SHIPPED = 'second'\n")
    second = ship("runtime", tree, BUCKET, True, loader_for(efs, s3), s3, lambda _: None)
    assert second["target"] != first["target"] and (efs / first["target"]).is_dir()
    assert os.readlink(efs / "packages") == second["target"]


def test_a_corrupted_upload_is_refused_and_nothing_changes(s3, efs, demo_store):
    version = demo_store / "models" / NAME / VERSION
    honest = loader_for(efs, s3)

    def tampering(payload):
        body = bytearray(s3.get_object(Bucket=payload["bucket"], Key=payload["key"])["Body"]
                         .read())
        body[len(body) // 2] ^= 0xFF
        s3.put_object(Bucket=payload["bucket"], Key=payload["key"], Body=bytes(body))
        return honest(payload)

    with pytest.raises(SystemExit, match="refused"):
        ship("model", version, BUCKET, True, tampering, s3, lambda _: None)
    assert not (efs / "models" / "current").exists()
    assert not any((efs / ".staging").iterdir())


def malicious_archive(members):
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as zipped, tarfile.open(fileobj=zipped,
                                                                        mode="w") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


@pytest.mark.parametrize("make", ["traversal", "symlink-out", "unlisted-file"])
def test_hostile_archives_are_refused(s3, efs, make):
    import hashlib
    listing = {"kind": "runtime", "id": "abc", "files": {"ok.txt": hashlib.sha256(b"ok")
                                                         .hexdigest()}}
    listing_bytes = json.dumps(listing).encode()
    members = [(tarfile.TarInfo(LISTING), listing_bytes), (tarfile.TarInfo("ok.txt"), b"ok")]
    if make == "traversal":
        members.append((tarfile.TarInfo("../../escaped.txt"), b"x"))
    elif make == "symlink-out":
        link = tarfile.TarInfo("evil")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        members.append((link, None))
    else:
        members.append((tarfile.TarInfo("extra.txt"), b"surprise"))
    for info, data in members:
        info.size = len(data) if data is not None else 0
    body = malicious_archive(members)
    s3.put_object(Bucket=BUCKET, Key="efs-upload/runtime/abc.tar.gz", Body=body)
    report = loader_for(efs, s3)({"bucket": BUCKET, "key": "efs-upload/runtime/abc.tar.gz",
                                  "sha256": hashlib.sha256(body).hexdigest(), "use": True})
    assert report["verified"] is False
    assert not (efs / "packages").exists() and not (efs / "runtime").exists()
    assert not (efs.parent / "escaped.txt").exists()


def test_the_function_imports_from_the_shipped_runtime(s3, efs, tmp_path):
    ship("runtime", fake_runtime(tmp_path), BUCKET, True, loader_for(efs, s3), s3,
         lambda _: None)
    import subprocess
    import sys
    code = ("from pathlib import Path; from chalicelib.inference.torch_import import import_torch;"
            f"print(import_torch(Path({str(efs / 'packages')!r})).SHIPPED)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert out.strip() == "yes"
    assert import_torch  # the same function the API uses


def test_the_loader_is_a_function_of_the_app():
    import app as app_module
    assert "efs_loader" in {f.name for f in app_module.app.pure_lambda_functions}
