"""`scripts/serve` (the README's `chalice local`) as a child process on a free loopback port,
for the load benchmark and the tests that need the real server: one copy of how it is started,
waited for and stopped (by its PID, never by name)."""
import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 300  # scripts/setup may have a requirement to install first


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_server(log_path: Path, **env: str) -> Iterator[Tuple[str, int]]:
    """`scripts/serve --no-autoreload` on a free port: yields (base URL, PID) once /health
    answers (which loads no model), and stops the server by its PID. Its output goes to
    log_path. Hermetic: the local store scripts/setup made (efs-local/), whatever XRAY_* this
    process inherited, plus `env`."""
    with _started([str(REPO / "scripts" / "serve")], log_path, env) as served:
        yield served


@contextlib.contextmanager
def chalice_local(log_path: Path, *args: str) -> Iterator[Tuple[str, int]]:
    """Plain `chalice local [args] --no-autoreload` as a Chalice user types it (the stage's
    environment from .chalice/config.json, nothing of ours around it), on a free port."""
    with _started([str(REPO / ".venv" / "bin" / "chalice"), "local", *args], log_path,
                  {}) as served:
        yield served


@contextlib.contextmanager
def _started(command: List[str], log_path: Path,
             env: Dict[str, str]) -> Iterator[Tuple[str, int]]:
    port = free_port()
    clean = {name: value for name, value in os.environ.items() if not name.startswith("XRAY_")}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*command, "--no-autoreload", "--port", str(port)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**clean, **env})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
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
