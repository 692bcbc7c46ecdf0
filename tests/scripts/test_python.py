"""scripts/python, which scripts/setup asks for the interpreter to make .venv with: the Python
Lambda's runtime is (3.13), taken from $PYTHON or found, and a clear refusal otherwise. Building
one from Debian's source package takes minutes; that path was run by hand (see the README)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures import REPO


@pytest.fixture
def script(tmp_path) -> Path:
    """A copy in a folder of its own: no .toolchain/ of the checkout can answer for it."""
    (tmp_path / "scripts").mkdir()
    return Path(shutil.copy(REPO / "scripts" / "python", tmp_path / "scripts" / "python"))


def run(script: Path, path: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(script)], capture_output=True, text=True, timeout=60,
                          env={"PATH": path, "HOME": str(script.parent), **env})


def bare_path(tmp_path: Path) -> str:
    """A PATH with only what the script needs to run: no python3.13, no pyenv, no apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def test_given_python_set_to_a_3_13_then_that_one_is_used(script):
    base = Path(sys._base_executable).resolve()  # the interpreter .venv was made with
    done = run(script, os.environ["PATH"], PYTHON=str(base))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(base)
    assert "using" in done.stderr and "3.13" in done.stderr


def test_given_python_set_to_another_version_then_it_is_refused(script, tmp_path):
    other = shutil.which("python3.11") or shutil.which("python3")
    if other is None or subprocess.run([other, "-c", "import sys; assert sys.version_info[:2] "
                                        "!= (3, 13)"]).returncode != 0:
        pytest.skip("no Python other than 3.13 here")
    done = run(script, os.environ["PATH"], PYTHON=other)
    assert done.returncode == 1 and done.stdout == ""
    assert "is not a working Python 3.13" in done.stderr


def test_given_no_3_13_and_no_apt_then_it_says_what_to_install_and_builds_nothing(script, tmp_path):
    done = run(script, bare_path(tmp_path))
    assert done.returncode == 1 and done.stdout == ""
    assert "no Python 3.13 found. Install one" in done.stderr
    assert "PYTHON=/path/to/python3.13 scripts/setup" in done.stderr
    assert not (script.parent.parent / ".toolchain").exists()


def test_given_a_3_13_on_path_then_it_is_found(script, tmp_path):
    path = bare_path(tmp_path)
    (tmp_path / "bin" / "python3.13").symlink_to(Path(sys._base_executable).resolve())
    done = run(script, path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "bin" / "python3.13")
