"""What the deploy tests share: `project`, a folder holding only a copy of the committed
.chalice/config.json (enough for the offline validation; tests that deploy copy the whole
project instead: tests/support/project.copy_project)."""
import shutil

import pytest

from tests.support.project import REPO


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".chalice").mkdir()
    shutil.copy(REPO / ".chalice" / "config.json", tmp_path / ".chalice" / "config.json")
    return tmp_path
