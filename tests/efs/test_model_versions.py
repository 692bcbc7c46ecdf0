"""Several models and versions side by side; switching the served one is atomic."""
import shutil
import threading

import pytest

from chalicelib.inference.lazy import LazyModel
from chalicelib.inference.store import read_manifest, sha256_hex
from vendor_efs.models.cli import main as models_cli
from vendor_efs.models.demo import NAME
from vendor_efs.models.demo import VERSION as OLD

NEW = "9"


@pytest.fixture
def two_versions(demo_store, tmp_path):
    """The demo as version 1, and a copy with other weights as version 2."""
    import json
    models = tmp_path / "models"
    shutil.copytree(demo_store / "models", models, symlinks=True)
    v1 = models / NAME / OLD
    v2 = v1.with_name(NEW)
    shutil.copytree(v1, v2)
    weights = bytearray((v2 / "model.safetensors").read_bytes())
    weights[-4:] = b"\0\0\0\0"  # a different (still valid) last float
    (v2 / "model.safetensors").write_bytes(bytes(weights))
    manifest = json.loads((v2 / "manifest.json").read_text())
    manifest["version"] = NEW
    manifest["weights"]["sha256"] = sha256_hex(bytes(weights))
    (v2 / "manifest.json").write_text(json.dumps(manifest))
    return models


def test_list_and_use(two_versions, capsys):
    models_cli(["list", "--store", str(two_versions)])
    listed = capsys.readouterr().out.splitlines()
    assert [line[0] for line in listed] == ["*", " "] and "UNTRAINED" in listed[0]
    models_cli(["use", f"{NAME}/{NEW}", "--store", str(two_versions)])
    assert read_manifest(two_versions / "current").version == NEW
    with pytest.raises(SystemExit, match="not switched"):
        models_cli(["use", f"{NAME}/404", "--store", str(two_versions)])
    assert read_manifest(two_versions / "current").version == NEW


def test_readers_never_see_a_half_switched_model(two_versions):
    stop, failures, reads = threading.Event(), [], []

    def switcher():
        while not stop.is_set():
            for version in (OLD, NEW):
                models_cli(["use", f"{NAME}/{version}",
                            "--store", str(two_versions)])

    def reader():
        for _ in range(120):
            manifest = read_manifest(two_versions / "current")
            if sha256_hex(manifest.weights_path.read_bytes()) != manifest.sha256:
                failures.append(manifest.version)
            reads.append(manifest.version)

    thread = threading.Thread(target=switcher)
    thread.start()
    try:
        reader()
    finally:
        stop.set()
        thread.join()
    assert not failures and set(reads) == {OLD, NEW}


def test_a_warm_model_keeps_its_version_and_a_new_container_gets_the_new_one(two_versions):
    warm = LazyModel(two_versions / "current", None)
    assert warm.get().manifest.version == OLD
    models_cli(["use", f"{NAME}/{NEW}", "--store", str(two_versions)])
    assert warm.get().manifest.version == OLD
    assert LazyModel(two_versions / "current", None).get().manifest.version == NEW
