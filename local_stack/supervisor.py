"""python -m local_stack [chalice local options]: the jobs flow on loopback, started and stopped
as one process (what scripts/serve execs).

In order: a moto server on a free loopback port (emulator.py); in it the stage's jobs bucket,
rules, queues, SES sender and webhook secret (resources.py); app.py imported here with the
same environment `chalice local` gets, and the relay calling its job handlers (relay.py);
then `chalice local --stage local` as a child process, with AWS_ENDPOINT_URL pointing at moto.
Options other than --host, --port and --stage (which this reads too) go to `chalice local`
unchanged, e.g. --no-autoreload.

Stopping: SIGINT or SIGTERM stops `chalice local` (its whole process group, so autoreload's
worker too), then the relay, then moto, and exits 0. If `chalice local` exits by itself, the
rest stops and this exits with its code. The supervisor makes itself the reaper of its
descendants (Linux), so nothing it started lingers as an orphan or a zombie.
"""
import argparse
import ctypes
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from chalicelib.settings import AUTH, CORS_ORIGINS, KEEP_DICOM_HEADERS, PROJECT_ROOT, parse_origins
from local_stack import emulator as emulators
from local_stack.relay import FUNCTIONS, Function, Relay, functions
from local_stack.resources import NOTIFIER, SWEEPER, WORKER, Resources, provision

CHALICE_CONFIG = PROJECT_ROOT / ".chalice" / "config.json"
READY_TIMEOUT_S = 120        # chalice local's import of app.py and its port
STOP_TIMEOUT_S = 10          # how long each part is given to stop before it is killed
POLL_S = 0.2                 # how often the main thread looks at chalice local
PR_SET_CHILD_SUBREAPER = 36  # prctl(2)
PREFIX = "local-stack:"


def say(line: str) -> None:
    print(f"{PREFIX} {line}", flush=True)


class Stop(Exception):
    """SIGINT or SIGTERM arrived."""


@dataclass(frozen=True)
class Options:
    host: str
    port: int
    stage: str
    chalice_args: List[str]  # the rest, for chalice local


def parse(argv: List[str]) -> Options:
    parser = argparse.ArgumentParser(prog="scripts/serve", add_help=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stage", default="local")
    parser.add_argument("-h", "--help", action="store_true")
    known, rest = parser.parse_known_args(argv)
    if known.help:
        print(__doc__)
        sys.exit(0)
    return Options(host=known.host, port=known.port, stage=known.stage, chalice_args=rest)


def chalice_settings(stage: str) -> Dict[str, Any]:
    """From .chalice/config.json, as Chalice reads it: the app's name, the stage's environment
    (what `chalice local` puts over ours) and each jobs function's timeout and memory."""
    from chalice.config import Config
    raw = json.loads(CHALICE_CONFIG.read_text())
    per_function = {}
    for name in FUNCTIONS:
        config = Config(chalice_stage=stage, function_name=name, config_from_disk=raw)
        per_function[name] = {"lambda_timeout": config.lambda_timeout,
                              "lambda_memory_size": config.lambda_memory_size}
    stage_config = Config(chalice_stage=stage, config_from_disk=raw)
    return {"app_name": raw["app_name"], "env": dict(stage_config.environment_variables),
            "functions": per_function}


def api_origins(host: str, port: int) -> List[str]:
    hosts = {"127.0.0.1", "localhost"} if host in ("0.0.0.0", "::", "127.0.0.1", "localhost") \
        else {host}
    return sorted(f"http://{name}:{port}" for name in hosts)


def become_subreaper() -> None:
    """Orphans among our descendants (autoreload's worker, when its parent dies first) are
    reparented to us, so we can reap them; elsewhere than Linux, a no-op."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(argv: List[str]) -> int:
    options = parse(argv)
    stopping: List[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if not stopping:  # the first one stops everything; later ones wait for that
            stopping.append(signum)
            raise Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    become_subreaper()
    emulator: Optional[emulators.Emulator] = None
    relay: Optional[Relay] = None
    child: Optional[subprocess.Popen] = None
    code = 0
    try:
        settings = chalice_settings(options.stage)
        emulator = emulators.start()
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(emulator.env())
        environ = {**os.environ, **settings["env"]}
        cors = [o for o in parse_origins(environ.get(CORS_ORIGINS, "")) if o != "*"]
        made = functions(settings["app_name"], options.stage, settings["functions"])
        resources = provision(emulator.client, settings["app_name"], options.stage,
                              api_origins(options.host, options.port) + cors, environ,
                              {name: f.timeout_s + 30 for name, f in made.items()})
        os.environ.update(resources.env())
        os.environ.update(settings["env"])  # as chalice local applies the stage's
        # the local flow holds demo data: its DICOM jobs keep what their SR and FHIR copy, so
        # that GET /xray/jobs/{id} answers them as an opted-in stage does (a value set wins)
        os.environ.setdefault(KEEP_DICOM_HEADERS, "true")
        relay = start_relay(emulator, resources, made)
        taken = listening(options)
        if taken:
            say(f"port {options.port} is taken already: chalice local cannot listen there")
        child = start_chalice(options)
        if not taken and wait_until_listening(options, child):
            banner(options, emulator, resources)
        # Polled, never one blocking wait: a signal may be delivered to any thread (moto's,
        # the relay's), and Python runs its handler only once the main thread runs again.
        while (exited := child.poll()) is None:
            time.sleep(POLL_S)
        say(f"chalice local exited with {exited}: stopping the rest")
        code = exited
        code = code if code >= 0 else 128 - code
    except Stop:
        say(f"{signal.Signals(stopping[0]).name}: stopping chalice local, the relay and moto")
    finally:
        stopping.append(0)  # a signal from now on changes nothing: the stop is under way
        if child is not None:
            stop_process_group(child)
        if relay is not None:
            relay.stop()
        if emulator is not None:
            emulator.stop()
        say("stopped")
    return code


def start_relay(emulator: emulators.Emulator, resources: Resources,
                made: Dict[str, Function]) -> Relay:
    """app.py imported in this process (its job handlers; the model loads lazily, at the first
    job), and the relay polling the queues with them."""
    app = importlib.import_module("app")
    handlers: Dict[str, Callable[[Any, Any], Any]] = {
        WORKER: app.job_worker, NOTIFIER: app.job_notifier, SWEEPER: app.job_sweeper}
    relay = Relay(emulator.client("sqs"), handlers, made, resources.queues,
                  app.get_settings().jobs.sweep_minutes, say)
    relay.start()
    return relay


def start_chalice(options: Options) -> subprocess.Popen:
    """chalice local in its own session: a Ctrl-C reaches the supervisor alone, which stops
    the child's whole group (autoreload's worker included)."""
    chalice = Path(sys.executable).parent / "chalice"
    command = [str(chalice), "local", "--stage", options.stage, "--host", options.host,
               "--port", str(options.port), *options.chalice_args]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, env=dict(os.environ),
                            start_new_session=True)


def listening(options: Options) -> bool:
    """Whether something accepts connections on the API's address."""
    host = "127.0.0.1" if options.host in ("0.0.0.0", "localhost") else options.host
    try:
        socket.create_connection((host, options.port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_until_listening(options: Options, child: subprocess.Popen) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while child.poll() is None and time.monotonic() < deadline:
        if listening(options):
            return True
        time.sleep(POLL_S)
    return False


def banner(options: Options, emulator: emulators.Emulator, resources: Resources) -> None:
    api = f"http://{options.host}:{options.port}"
    secret = resources.webhook_secret_name
    lines = [
        "ready: Ctrl-C (or SIGTERM) stops all of it",
        f"  API          {api}  (chalice local --stage {options.stage}, "
        f"{AUTH}={os.environ.get(AUTH, '')})",
        f"  upload jobs  POST {api}/xray/jobs, then GET {api}/xray/jobs/<job_id>",
        f"  AWS (moto)   {emulator.endpoint}  (region {emulators.REGION}, credentials "
        f"testing/testing; dashboard {emulator.endpoint}/moto-api/)",
        f"  jobs bucket  {resources.bucket}  (S3 -> EventBridge -> SQS -> relay -> app.py's "
        "job_worker / job_notifier)",
        f"  e-mail from  {resources.ses_sender}  (moto's SES keeps the mail; none is sent)",
        f"  webhooks     signed with the secret {secret}; read it with",
        f"               AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing aws "
        f"--endpoint-url {emulator.endpoint} --region {emulators.REGION} ssm get-parameter "
        f"--name {secret} --with-decryption --query Parameter.Value --output text",
    ]
    for line in lines:
        say(line)


def stop_process_group(child: subprocess.Popen) -> None:
    """SIGTERM to the child's process group, SIGKILL after STOP_TIMEOUT_S; then every
    descendant reaped (as their subreaper, orphans come to us)."""
    _signal_group(child.pid, signal.SIGTERM)
    try:
        child.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _signal_group(child.pid, signal.SIGKILL)
        child.wait()
    started = time.monotonic()
    killed = False
    while time.monotonic() < started + 2 * STOP_TIMEOUT_S:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # no descendant left
        if pid == 0:
            if time.monotonic() > started + STOP_TIMEOUT_S and not killed:
                _signal_group(child.pid, signal.SIGKILL)
                killed = True
            time.sleep(0.05)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
