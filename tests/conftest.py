import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "cxr"

PNG_CARDIOMEGALY = FIXTURES / "nih_00000001_000_cardiomegaly.png"
PNG_NOFINDING = FIXTURES / "nih_00027426_000_nofinding.png"
PNG_TINY_RGB = FIXTURES / "nih1000_64px_00000165_005_rgb.png"
DCM_MONO2 = FIXTURES / "nih_00000001_000_wrapped_uncompressed_8bit_mono2_derived.dcm"
DCM_JPEG_MONO1 = FIXTURES / "nih_00000001_000_wrapped_jpegbaseline_8bit_mono1_derived.dcm"
DCM_J2K = FIXTURES / "nema_RG1_chest_cr_pa_j2k_lossy_15bit_mono1.dcm"
DCM_QUARTER = FIXTURES / "nema_RG1_chest_cr_pa_uncompressed_15bit_mono1_quarter_derived.dcm"
ALL_FIXTURES = sorted(p for p in FIXTURES.iterdir() if p.suffix in (".png", ".dcm"))
CONTENT_TYPE = {".png": "image/png", ".dcm": "application/dicom", ".jpg": "image/jpeg"}


def fixture_id(path: Path) -> str:
    return path.stem[:40]


def jpeg_of(path: Path, quality: int = 95, **save_args) -> bytes:
    """A JPEG made from a fixture PNG (the shared fixtures hold no plain JPEG)."""
    from PIL import Image
    out = io.BytesIO()
    Image.open(path).convert("L").save(out, "JPEG", quality=quality, **save_args)
    return out.getvalue()


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    """A fresh EFS-like root holding the demo model, as scripts/setup writes it."""
    from vendor_efs.demo_model import install_demo
    root = tmp_path_factory.mktemp("efs")
    install_demo(root / "models")
    return root


@contextlib.contextmanager
def serving(efs_root: Path, **env: str) -> Iterator:
    """The Chalice app reading its store from efs_root, with fresh cached getters."""
    import app as app_module
    from chalice.test import Client

    names = {"XRAY_EFS_ROOT": str(efs_root), **env}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    _clear(app_module)
    try:
        with Client(app_module.app) as client:
            yield client
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _clear(app_module)


def _clear(app_module) -> None:
    for getter in (app_module.get_settings, app_module.get_model, app_module.get_service):
        getter.cache_clear()


@pytest.fixture(scope="session")
def client(demo_store):
    """One warm app for the read-only route tests."""
    with serving(demo_store) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_server(log_path: Path, **env: str) -> Iterator:
    """`scripts/serve` (the README's command) on a free port: yields (base URL, PID) once
    /health answers, and stops the server by its PID. Hermetic: the local store scripts/setup
    made (efs-local/), whatever XRAY_* this process inherited, plus `env`."""
    port = free_port()
    clean = {name: value for name, value in os.environ.items() if not name.startswith("XRAY_")}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(REPO / "scripts" / "serve"), "--no-autoreload", "--port", str(port)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**clean, **env})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300  # scripts/setup may have a requirement to install
            while True:
                try:
                    urllib.request.urlopen(f"{base}/health", timeout=2)
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        raise RuntimeError("chalice local did not start:\n"
                                           + log_path.read_text()[-3000:])
                    time.sleep(0.3)
            yield base, process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def run_isolated(code: str, *args: str, **env: str) -> str:
    """Runs `code` in a fresh interpreter at the repo root (argv[1:] = args); its stdout."""
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
