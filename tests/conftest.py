"""Fixtures shared by every test package; helpers live in tests/support/."""
from pathlib import Path

import pytest

from tests.support.serving import import_app_unauthenticated, serving

# app.py picks its routes' authorizers when first imported (XRAY_AUTH; unset = iam). The
# in-process tests run it as stage "local" without any; tests/api/test_auth_modes.py imports it
# under each mode in a fresh interpreter.
import_app_unauthenticated()


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    """A fresh EFS-like root holding the demo model, as scripts/setup writes it."""
    from vendor_efs.models.demo import install_demo
    root = tmp_path_factory.mktemp("efs")
    install_demo(root / "models")
    return root


@pytest.fixture(scope="session")
def client(demo_store):
    """One warm app for the read-only route tests."""
    with serving(demo_store) as c:
        yield c


@pytest.fixture(scope="session")
def host_runtime(tmp_path_factory):
    """(tree, report): vendor_efs.runtime's payload tree for this machine (vendor_efs.runtime.host),
    built once per session for the tests that import torch from an EFS-like tree, and removed
    afterwards (it holds GBs when torch is a CUDA build)."""
    import json
    import shutil

    from vendor_efs.runtime.build import REPORT_FILE, build
    from vendor_efs.runtime.host import host_build
    work = tmp_path_factory.mktemp("host-runtime")
    tree = work / "packages"
    build(out=tree, log=lambda message: None, **host_build(work))
    yield tree, json.loads((tree / REPORT_FILE).read_text())
    shutil.rmtree(work)
