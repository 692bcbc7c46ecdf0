"""Fixtures shared by every test package; helpers live in tests/support/."""
from pathlib import Path

import pytest

from tests.support.serving import serving


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
