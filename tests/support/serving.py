"""The app under test, in process (Chalice's test client) or as the README runs it
(`scripts/serve`), and fresh interpreters for what must be checked from a clean start."""
import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from benchmarks.local_server import chalice_local, free_port, local_server  # noqa: F401
from tests.support.fixtures import REPO


def import_app_unauthenticated():
    """Imports app.py (once per process) with XRAY_AUTH=none, whatever this process inherited;
    the environment is left as it was."""
    from chalicelib.settings import AUTH
    saved = os.environ.get(AUTH)
    os.environ[AUTH] = "none"
    try:
        import app as app_module
        app_module.get_settings.cache_clear()
    finally:
        if saved is None:
            os.environ.pop(AUTH, None)
        else:
            os.environ[AUTH] = saved
    return app_module


@contextlib.contextmanager
def serving(efs_root: Path, **env: str) -> Iterator:
    """The Chalice app reading its store from efs_root, with fresh cached getters."""
    from chalice.test import Client

    import app as app_module

    names = {"XRAY_EFS_ROOT": str(efs_root), **env}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    _clear(app_module)
    environ = os.environ
    try:
        # stage "local", as scripts/serve runs it: no stage of .chalice/config.json has that
        # name, so the test client adds no deployed stage's variables (XRAY_EFS_ROOT=/mnt/...)
        with Client(app_module.app, stage_name="local") as client:
            yield client
    finally:
        # The test client swaps os.environ for a patched copy during each request (with the
        # stage's variables) and back; concurrent requests can leave a copy in place, which
        # Settings.from_env (bound to the real one) would no longer see changes of.
        os.environ = environ
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _clear(app_module)


def _clear(app_module) -> None:
    """Every cached getter of app.py (settings, model, service, the jobs' store and service),
    so that a test's environment (a moto server's endpoint, a jobs bucket) is read afresh."""
    for name in dir(app_module):
        getter = getattr(app_module, name)
        if name.startswith("get_") and hasattr(getter, "cache_clear"):
            getter.cache_clear()


def run_isolated(code: str, *args: str, **env: str) -> str:
    """Runs `code` in a fresh interpreter at the repo root (argv[1:] = args); its stdout."""
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
