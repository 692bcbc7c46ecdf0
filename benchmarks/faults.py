"""`python -m benchmarks faults`: the model-store fault table from a real run. Each row breaks a
private copy of the demo store one way, serves it through the real Lambda entry point
(app(event, context), with a Lambda context's deadline), and records what POST /xray answers,
what /health says, how long the answer took, and whether fixing the store (no restart) brings
the next requests back to 200. A correctness table, not a speed figure.

The slow store is real too: the weights are a named pipe fed at a throttled rate, so the
loader's reads are slow the way an EFS under load is, with no code patched.
"""
import contextlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "build" / "benchmarks" / "faults"
IMAGE = REPO.parent / "shared" / "fixtures" / "cxr" / "nih_00000001_000_cardiomegaly.png"
LAMBDA_TIMEOUT_S = 28  # the API function's timeout (deploy/settings.py allows at most 28 s)
SLOW_LOAD_S = 8.0      # how long the slow store takes to deliver the weights
SLOW_TIMEOUT_S = 5     # the first request's Lambda timeout in the slow-store row

Fix = Callable[[], None]


@dataclass(frozen=True)
class Fault:
    name: str
    # breaks the store whose EFS root is given; yields the operator's fix; cleans up after
    inject: Callable[[Path], "contextlib.AbstractContextManager[Fix]"]
    timeout_s: float = LAMBDA_TIMEOUT_S  # the first request's Lambda timeout


def version_dir(root: Path) -> Path:
    return (root / "models" / "current").resolve()


def _restoring(path: Path, damage: Callable[[Path], None]) -> Callable[[Path], Any]:
    """A fault that damages one file of the served version; the fix puts the original back."""
    @contextlib.contextmanager
    def inject(root: Path) -> Iterator[Fix]:
        target = version_dir(root) / path
        original = target.read_bytes()
        mode = target.stat().st_mode
        damage(target)

        def fix() -> None:
            if target.is_dir():
                target.rmdir()
            elif target.exists():
                target.chmod(mode)
            target.write_bytes(original)
        yield fix
    return inject


def _flip_bit(target: Path) -> None:
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 1
    target.write_bytes(bytes(data))


def _truncate(target: Path) -> None:
    target.write_bytes(target.read_bytes()[:target.stat().st_size // 2])


def _unreadable(target: Path) -> None:
    if os.geteuid() == 0:  # root reads a mode-000 file anyway: a directory in its place
        target.unlink()
        target.mkdir()
    else:
        target.chmod(0)


def _manifest_edit(edit: Callable[[Dict[str, Any]], None]) -> Callable[[Path], None]:
    def damage(target: Path) -> None:
        manifest = json.loads(target.read_text())
        edit(manifest)
        target.write_text(json.dumps(manifest))
    return damage


def _drop_last_label(manifest: Dict[str, Any]) -> None:
    label = manifest["labels"].pop()
    manifest["thresholds"].pop(label, None)


def _wrong_input_size(manifest: Dict[str, Any]) -> None:
    manifest["input"]["size"] = 512


@contextlib.contextmanager
def _missing_store(root: Path) -> Iterator[Fix]:
    models, away = root / "models", root / "models.away"
    models.rename(away)
    yield lambda: away.rename(models)


def _moved_away(name: str) -> Callable[[Path], Any]:
    @contextlib.contextmanager
    def inject(root: Path) -> Iterator[Fix]:
        target = version_dir(root) / name
        away = target.with_name(name + ".away")
        target.rename(away)
        yield lambda: away.rename(target)
    return inject


@contextlib.contextmanager
def _corrupt_graph_with_its_hash(root: Path) -> Iterator[Fix]:
    """Garbage in model.onnx whose sha256 the manifest pins: what onnxruntime refuses."""
    import hashlib
    folder = version_dir(root)
    graph, manifest = folder / "model.onnx", folder / "manifest.json"
    originals = graph.read_bytes(), manifest.read_bytes()
    garbage = b"not an onnx graph " * 64
    graph.write_bytes(garbage)
    _manifest_edit(lambda m: m["onnx"].update(sha256=hashlib.sha256(garbage).hexdigest()))(
        manifest)

    def fix() -> None:
        graph.write_bytes(originals[0])
        manifest.write_bytes(originals[1])
    yield fix


@contextlib.contextmanager
def slow_weights(root: Path, seconds: float = SLOW_LOAD_S) -> Iterator[Fix]:
    """The served weights become a named pipe that delivers the real bytes over `seconds`, to
    every reader in turn (a slow store, not a broken one: the fix is to wait)."""
    target = version_dir(root) / "model.safetensors"
    data = target.read_bytes()
    target.unlink()
    os.mkfifo(target)
    stop = threading.Event()
    chunk = 256 * 1024
    pause = seconds / max(1, len(data) // chunk)

    def feed() -> None:
        while not stop.is_set():
            try:
                with open(target, "wb") as pipe:  # blocks until a reader opens it
                    for start in range(0, len(data), chunk):
                        if stop.is_set():
                            return
                        pipe.write(data[start:start + chunk])
                        pipe.flush()
                        time.sleep(pause)
            except BrokenPipeError:  # the reader went away (the cleanup below, or a test)
                continue
            _wait_for_the_reader_to_close(target)  # else it would read on into the next round

    feeder = threading.Thread(target=feed, name="slow-store", daemon=True)
    feeder.start()
    try:
        yield lambda: None
    finally:
        stop.set()
        with contextlib.suppress(OSError):  # release a feeder waiting for a reader
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
            os.close(fd)
        feeder.join(timeout=seconds + 5)
        target.unlink()
        target.write_bytes(data)


def _wait_for_the_reader_to_close(fifo: Path) -> None:
    """A reader sees end-of-file only once no writer has the pipe open: before the next round,
    wait until the last reader has closed it (a non-blocking open for writing then fails)."""
    while True:
        try:
            probe = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader
            return
        os.close(probe)
        time.sleep(0.01)


FAULTS: List[Fault] = [
    Fault("missing store", _missing_store),
    Fault("missing weights", _moved_away("model.safetensors")),
    Fault("truncated weights", _restoring(Path("model.safetensors"), _truncate)),
    Fault("sha256 mismatch (one bit)", _restoring(Path("model.safetensors"), _flip_bit)),
    Fault("manifest lies: label count",
          _restoring(Path("manifest.json"), _manifest_edit(_drop_last_label))),
    Fault("manifest lies: input shape",
          _restoring(Path("manifest.json"), _manifest_edit(_wrong_input_size))),
    Fault("unreadable weights", _restoring(Path("model.safetensors"), _unreadable)),
    Fault("missing ONNX graph", _moved_away("model.onnx")),
    Fault("corrupt ONNX graph", _corrupt_graph_with_its_hash),
    Fault("slow store (EFS under load)", slow_weights, timeout_s=SLOW_TIMEOUT_S),
]


@contextlib.contextmanager
def app_serving(efs_root: Path) -> Iterator[Any]:
    """app.py reading its store from efs_root, with fresh cached getters (a new container)."""
    import app as app_module
    saved = os.environ.get("XRAY_EFS_ROOT")
    os.environ["XRAY_EFS_ROOT"] = str(efs_root)
    for getter in (app_module.get_settings, app_module.get_model, app_module.get_service):
        getter.cache_clear()
    try:
        yield app_module
    finally:
        if saved is None:
            os.environ.pop("XRAY_EFS_ROOT", None)
        else:
            os.environ["XRAY_EFS_ROOT"] = saved
        for getter in (app_module.get_settings, app_module.get_model, app_module.get_service):
            getter.cache_clear()


def invoke(app_module: Any, method: str, path: str, body: bytes = b"",
           content_type: str = "", timeout_s: float = LAMBDA_TIMEOUT_S
           ) -> Tuple[int, Dict[str, str], Dict[str, Any]]:
    """One request through the Lambda entry point: (status, headers, JSON body)."""
    from lambda_sim.context import LambdaContext
    from lambda_sim.events import proxy_event
    response = app_module.app(proxy_event(method, path, body, content_type),
                              LambdaContext(timeout_s=timeout_s))
    return response["statusCode"], response["headers"], json.loads(response["body"])


def run_fault(fault: Fault, source: Path, work: Path, image: bytes) -> Dict[str, Any]:
    root = work / fault.name.split(" (")[0].replace(" ", "-").replace(":", "")
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(source, root, symlinks=True)
    row: Dict[str, Any] = {"fault": fault.name, "deadline_s": fault.timeout_s}
    with fault.inject(root) as fix, app_serving(root) as app_module:
        started = time.monotonic()
        status, headers, body = invoke(app_module, "POST", "/xray", image, "image/png",
                                       timeout_s=fault.timeout_s)
        row.update(answer_s=round(time.monotonic() - started, 2), status=status,
                   code=body.get("Code"), message=body.get("Message", ""),
                   retry_after=headers.get("Retry-After"))
        health = invoke(app_module, "GET", "/health")[2]
        row["health"] = {"live": health["live"], "ready": health["ready"],
                         "state": health["model"]["state"],
                         "reason": health["model"].get("error", "")}
        fix()
        row["recovered"], row["recovered_after_s"] = _recovers(app_module, image)
        row["attempts"] = app_module.get_model().status()["attempts"]
    for key in ("message",):
        row[key] = row[key].replace(str(root), "<efs>")
    row["health"]["reason"] = row["health"]["reason"].replace(str(root), "<efs>")
    return row


def _recovers(app_module: Any, image: bytes, within_s: float = 60) -> Tuple[bool, float]:
    """Requests as a client would send them, honouring Retry-After, until one is 200."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        status, headers, _ = invoke(app_module, "POST", "/xray", image, "image/png")
        if status == 200:
            return True, round(time.monotonic() - started, 2)
        time.sleep(float(headers.get("Retry-After", "1")))
    return False, round(time.monotonic() - started, 2)


def _short(text: str, width: int, tail: int = 0) -> str:
    """At most width characters: the start, and the last `tail` ones (what to do)."""
    if len(text) <= width:
        return text
    return text[:width - tail - 5] + " ... " + text[len(text) - tail:] if tail else \
        text[:width - 3] + "..."


def table(rows: List[Dict[str, Any]]) -> str:
    lines = ["| fault | status | Code | message (shortened) | /health | answer (deadline) "
             "| fixed: 200 without restart |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        health = row["health"]
        state = f"live={str(health['live']).lower()}, ready={str(health['ready']).lower()}, " \
                f"{health['state']}"
        if health["reason"]:
            state += f": {_short(health['reason'], 60)}"
        retry = f", Retry-After {row['retry_after']}" if row.get("retry_after") else ""
        loads = f"{row['attempts']} load{'s' if row['attempts'] != 1 else ''}"
        recovered = (f"yes, after {row['recovered_after_s']:.1f} s ({loads})"
                     if row["recovered"] else "NO")
        message = row["message"].removeprefix("The model is not available: ")
        lines.append(f"| {row['fault']} | {row['status']}{retry} | {row['code']} | "
                     f"{_short(message, 150, tail=50)} | {state} | {row['answer_s']:.2f} s "
                     f"({row['deadline_s']:.0f} s) | {recovered} |")
    return "\n".join(lines)


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("faults")
    group.add_argument("--fault", action="append", dest="fault_names", metavar="NAME",
                       help="only this fault row (repeatable; default: every row)")


def run(args: Any) -> Tuple[Dict[str, Any], str]:
    from vendor_efs.models.demo import install_demo
    names: Optional[List[str]] = getattr(args, "fault_names", None)
    chosen = [fault for fault in FAULTS if not names or fault.name in names]
    if names and len(chosen) != len(names):
        raise SystemExit(f"unknown fault(s); known: {', '.join(f.name for f in FAULTS)}")
    shutil.rmtree(WORK, ignore_errors=True)
    source = WORK / "demo-efs"
    install_demo(source / "models")
    image = IMAGE.read_bytes()
    rows = [run_fault(fault, source, WORK, image) for fault in chosen]
    shutil.rmtree(WORK, ignore_errors=True)
    return {"rows": rows, "problems": problems(rows)}, table(rows)


def problems(rows: List[Dict[str, Any]]) -> List[str]:
    """What makes a row wrong: not a 503, too late, /health ready, or no recovery."""
    found = []
    for row in rows:
        if row["status"] != 503 or row["answer_s"] >= row["deadline_s"]:
            found.append(f"{row['fault']}: {row['status']} after {row['answer_s']} s")
        if row["health"]["ready"] or not row["recovered"]:
            found.append(f"{row['fault']}: ready={row['health']['ready']}, "
                         f"recovered={row['recovered']}")
    return found
