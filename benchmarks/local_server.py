"""`scripts/serve` (the README's one command: `chalice local` and the local AWS stand-in around
it, local_stack/) as a child process on a free loopback port, for the benchmarks and the tests
that need the real server: one copy of how it is started, waited for and stopped (by its PID,
never by name)."""
import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

from local_stack.emulator import free_port

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 300  # scripts/setup may have a requirement to install first


@contextlib.contextmanager
def local_server(log_path: Path, **env: str) -> Iterator[Tuple[str, int]]:
    """`scripts/serve --no-autoreload` on a free port: yields (base URL, PID of the `chalice
    local` that answers HTTP) once /health answers (which loads no model), and stops
    scripts/serve by its PID (which stops all it started). Its output goes to log_path.
    Hermetic: the local store scripts/setup made (efs-local/), whatever XRAY_* this process
    inherited, plus `env`."""
    with _started([str(REPO / "scripts" / "serve")], log_path, env) as (base, pid):
        yield base, serving_pid(pid)


@contextlib.contextmanager
def chalice_local(log_path: Path, *args: str, **env: str) -> Iterator[Tuple[str, int]]:
    """Plain `chalice local [args] --no-autoreload` as a Chalice user types it (the stage's
    environment from .chalice/config.json, nothing of ours around it but `env`), on a free
    port."""
    with _started([str(REPO / ".venv" / "bin" / "chalice"), "local", *args], log_path,
                  env) as served:
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
            started = descendants(process.pid)
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:  # never leave a server behind: a stop that hangs
                for pid in [process.pid, *started]:  # is a failure, reported as such
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait()
                raise


def children(pid: int) -> List[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            # pid (comm) state ppid ...: comm may hold spaces and parentheses
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> List[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def serving_pid(pid: int) -> int:
    """The `chalice local` among the descendants of scripts/serve's process (which is the
    local stack's supervisor), the innermost under autoreload; `pid` itself when there is none
    (plain chalice local)."""
    found = pid
    for candidate in descendants(pid):
        try:
            command = (Path("/proc") / str(candidate) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"chalice") for part in command) and b"local" in command:
            found = candidate
    return found
