"""The real Lambda entry, app.app(event, context), in a worker process the fuzzer can kill: an
input that hangs inside C code (where no Python signal reaches) or that kills the interpreter
costs a restart, not the run. The parent sends one request at a time on the worker's stdin and
reads the answer, the time app() took and the worker's peak RSS since it started."""
import os
import pickle
import resource
import select
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from chalicelib.settings import EFS_ROOT, PROJECT_ROOT


@dataclass(frozen=True)
class Request:
    route: str
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Reply:
    response: Optional[Dict[str, Any]]  # None: the worker hung or died
    seconds: float
    rss_mb: float
    failure: str = ""  # "hung", "died (exit -9)": why there is no response


def invoke(handler: Callable, request: Request) -> Tuple[Dict[str, Any], float]:
    """One API Gateway proxy event (base64 body, as for the app's binary types) through the
    handler; (the Lambda response, seconds)."""
    from lambda_sim.context import LambdaContext
    from lambda_sim.events import proxy_event
    event = proxy_event("POST", request.route, request.body, request.content_type)
    started = time.perf_counter()
    response = handler(event, LambdaContext())
    return response, time.perf_counter() - started


def peak_rss_mb() -> float:
    """This process's own peak RSS. Linux keeps getrusage's ru_maxrss across execve, so a worker
    started from a large parent (pytest with torch loaded) would report the parent's peak; the
    kernel's VmHWM belongs to this process's memory alone."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def _serve() -> None:
    import logging
    # The protocol owns the real stdout; anything the app prints goes to stderr (the log).
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    import app as app_module
    logging.disable(logging.WARNING)  # the access log and decode warnings, once per input
    source = sys.stdin.buffer
    while True:
        header = source.read(4)
        if len(header) < 4:
            return
        request = pickle.loads(source.read(struct.unpack("<I", header)[0]))
        response, seconds = invoke(app_module.app, request)
        reply = pickle.dumps(Reply(response, seconds, peak_rss_mb()))
        channel.write(struct.pack("<I", len(reply)) + reply)
        channel.flush()


class Worker:
    """A worker process serving the model store at efs_root; restarted after a hang or death."""

    def __init__(self, efs_root: Path, log_path: Optional[Path] = None) -> None:
        self.efs_root = efs_root
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="fuzz-worker-", suffix=".log")[1])
        self.process: Optional[subprocess.Popen] = None
        self.starts = 0

    def start(self) -> None:
        env = {**os.environ, EFS_ROOT: str(self.efs_root), "PYTHONPATH": str(PROJECT_ROOT)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fuzzing.lambda_worker"], cwd=PROJECT_ROOT, env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self.starts += 1

    def ask(self, request: Request, kill_after_s: float) -> Reply:
        if self.process is None or self.process.poll() is not None:
            self.start()
        process = self.process
        assert process is not None and process.stdin and process.stdout
        data = pickle.dumps(request)
        started = time.perf_counter()
        try:
            process.stdin.write(struct.pack("<I", len(data)) + data)
            process.stdin.flush()
            header = self._read(process, 4, started + kill_after_s)
            if header is not None:
                body = self._read(process, struct.unpack("<I", header)[0], started + 60)
                if body is not None:
                    return pickle.loads(body)
        except (BrokenPipeError, OSError):
            pass
        elapsed = time.perf_counter() - started
        if process.poll() is None:
            self.stop()
            return Reply(None, elapsed, 0.0, f"hung (killed after {kill_after_s:g} s)")
        code = process.returncode
        self.process = None
        return Reply(None, elapsed, 0.0, f"worker died (exit {code})")

    @staticmethod
    def _read(process: subprocess.Popen, size: int, deadline: float) -> Optional[bytes]:
        assert process.stdout
        fd, got = process.stdout.fileno(), b""
        while len(got) < size:
            left = deadline - time.perf_counter()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            piece = os.read(fd, size - len(got))
            if not piece:
                return None
            got += piece
        return got

    def stop(self) -> None:
        """Ends this worker (by its own PID) and waits for it."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=30)
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe:
                    pipe.close()
            self.process = None


if __name__ == "__main__":
    # by its module name, so that what it pickles (Reply) unpickles in the parent
    from fuzzing.lambda_worker import _serve as serve
    serve()
