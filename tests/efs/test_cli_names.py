"""The model store's commands under their documented names, and under their old names (which
keep working, saying what replaced them)."""
import subprocess
import sys

from tests.support.fixtures import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_demo_then_list_under_the_models_command(tmp_path):
    store = tmp_path / "models"
    made = run("vendor_efs.models", "demo", "--store", str(store))
    assert made.returncode == 0, made.stderr
    assert "demo model ready" in made.stdout and "deprecated" not in made.stderr
    listed = run("vendor_efs.models", "list", "--store", str(store))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("* densenet121-xrv-untrained-demo/")
    assert "UNTRAINED demo" in listed.stdout


def test_the_old_demo_command_still_works_and_names_the_new_one(tmp_path):
    store = tmp_path / "models"
    made = run("vendor_efs.demo_model", "--store", str(store))
    assert made.returncode == 0, made.stderr
    assert "demo model ready" in made.stdout
    assert ("python -m vendor_efs.demo_model is deprecated and will be removed: use "
            "python -m vendor_efs.models demo") in made.stderr
    assert (store / "current" / "manifest.json").is_file()


def test_the_old_import_command_still_parses_its_arguments_and_names_the_new_one():
    old = run("vendor_efs.import_model", "--help")
    new = run("vendor_efs.models", "import", "--help")
    assert old.returncode == new.returncode == 0
    assert "use python -m vendor_efs.models import" in old.stderr
    assert old.stdout == new.stdout and "--thresholds" in new.stdout
