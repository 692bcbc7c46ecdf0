"""The coverage-guided mode: atheris (libFuzzer) over dispatch.decode for one content type per
process, since atheris.Fuzz() never returns. Our decoders, Pillow's plugins and pydicom are
Python, so instrumenting their imports lets libFuzzer keep the inputs that reach new branches.
The target's contract is decode's: a DecodedImage with finite pixels in [0, 1], or a
ClientError; anything else escaping is a crash, which libFuzzer saves as an artifact.

    python -m fuzzing.coverage CONTENT_TYPE STATS_JSON [libFuzzer flags] CORPUS_DIR SEEDS_DIR
"""
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict

from chalicelib.imaging.formats import DICOM, JPEG, PNG, sniff
from chalicelib.settings import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, PROJECT_ROOT
from fuzzing import corpus, seeds
from fuzzing.lambda_worker import peak_rss_mb
from fuzzing.rule import Bounds
from fuzzing.structure import Result

# target -> (the Content-Type it declares, the formats its seeds are). image/jpg decodes exactly
# as image/jpeg, and the form types are refused before any byte is read: not targets of their own.
TARGETS = {
    "png": ("image/png", (PNG,)),
    "jpeg": ("image/jpeg", (JPEG,)),
    "dicom": ("application/dicom", (DICOM,)),
    "octet-stream": ("application/octet-stream", (PNG, JPEG, DICOM)),
}
MAX_LEN = 16 * 1024  # libFuzzer's input size cap: above the largest small seed
STATS_EVERY = 50


def _fuzz(content_type: str, stats_path: str, argv: list) -> None:
    """The child: instruments the decoders, then hands control to libFuzzer."""
    import logging

    import atheris  # type: ignore[import-untyped]
    with atheris.instrument_imports(include=["chalicelib.imaging", "PIL", "pydicom"]):
        import PIL.Jpeg2KImagePlugin  # noqa: F401  (pydicom decodes JPEG 2000 through it)
        import pydicom  # noqa: F401

        from chalicelib.imaging import dicom  # noqa: F401  (imported lazily by dispatch)
        from chalicelib.imaging.dispatch import decode
    import numpy as np

    from chalicelib.errors import ClientError
    from chalicelib.imaging.image import Limits
    logging.disable(logging.CRITICAL)  # the decoders log each refused file
    limits = Limits(max_pixels=DEFAULT_MAX_PIXELS, min_side=DEFAULT_MIN_SIDE)
    stats: Dict = {"runs": 0, "answers": {}, "slowest_s": 0.0}
    target_runs = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("-runs=")), 0)

    def flush() -> None:
        stats["peak_rss_mb"] = peak_rss_mb()
        Path(stats_path).write_text(json.dumps(stats))

    def one_input(data: bytes) -> None:
        stats.setdefault("first_input_at", time.time())
        started = time.perf_counter()
        try:
            image = decode(data, content_type, limits)
            pixels = image.pixels
            if not (pixels.ndim == 2 and np.isfinite(pixels).all()
                    and 0.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0):
                raise AssertionError("decode returned pixels that are not finite values in "
                                     "[0, 1] on a 2-D grid")
            label = "decoded"
        except ClientError as error:
            label = f"{error.STATUS_CODE} {type(error).__name__}"
        finally:
            stats["slowest_s"] = max(stats["slowest_s"], time.perf_counter() - started)
        stats["runs"] += 1
        stats["answers"][label] = stats["answers"].get(label, 0) + 1
        if stats["runs"] % STATS_EVERY == 0 or stats["runs"] >= target_runs:
            flush()

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


FINAL_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.MULTILINE)


def run_target(name: str, runs: int, seed: int, bounds: Bounds, work: Path,
               corpus_dir: "Path | None", progress: Callable[[str], None]) -> Result:
    """One atheris process for one target; its figures, and any artifact saved to corpus_dir."""
    content_type, formats = TARGETS[name]
    folder = work / name
    seed_dir, grown, artifacts = folder / "seeds", folder / "corpus", folder / "artifacts"
    for directory in (seed_dir, grown, artifacts):
        directory.mkdir(parents=True, exist_ok=True)
    for base in seeds.names("small"):
        data = seeds.load(base)
        if sniff(data) in formats:
            (seed_dir / base).write_bytes(data)
    stats_path, log_path = folder / "stats.json", folder / "libfuzzer.log"
    stats_path.unlink(missing_ok=True)
    flags = [f"-runs={runs}", f"-seed={seed}", f"-max_len={MAX_LEN}",
             f"-timeout={math.ceil(bounds.time_s)}", f"-rss_limit_mb={bounds.rss_mb}",
             "-print_final_stats=1", f"-artifact_prefix={artifacts}/", str(grown), str(seed_dir)]
    progress(f"fuzz: decode-{name}: atheris, {runs} inputs ({content_type})")
    started = time.perf_counter()
    with open(log_path, "w") as log:
        code = subprocess.call([sys.executable, "-m", "fuzzing.coverage", content_type,
                                str(stats_path), *flags], cwd=PROJECT_ROOT, stdout=log,
                               stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    seconds, ended_at = time.perf_counter() - started, time.time()
    text = log_path.read_text(errors="replace")
    final = {key: int(value) for key, value in FINAL_STAT.findall(text)}
    child = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    result = Result(f"decode-{name}", inputs=final.get("number_of_executed_units",
                                                       child.get("runs", 0)),
                    seconds=seconds, answers=child.get("answers", {}),
                    slowest_s=child.get("slowest_s", 0.0),
                    peak_rss_mb=final.get("peak_rss_mb", child.get("peak_rss_mb", 0.0)),
                    busy_seconds=ended_at - child.get("first_input_at", ended_at - seconds))
    result.extra = {"libfuzzer_exit": code, "new_units": final.get("new_units_added", 0),
                    "execs_per_s_libfuzzer": final.get("average_exec_per_sec", 0),
                    "coverage": _last_cov(text), "log": str(log_path)}
    for artifact in sorted(artifacts.iterdir()):
        kind = artifact.name.split("-", 1)[0]  # crash, timeout, oom, leak, slow-unit
        broke = [f"libFuzzer {kind}"] + _python_error(text)
        saved = (corpus.save(f"decode-{name}", artifact.read_bytes(), content_type, "/xray",
                             broke, corpus=corpus_dir) if corpus_dir else None)
        result.violations.append({"artifact": str(artifact), "broke": broke,
                                  "content_type": content_type, "saved": str(saved or "")})
        progress(f"fuzz: decode-{name} broke the rule: {'; '.join(broke)}")
    if code != 0 and not result.violations:
        result.violations.append({"broke": [f"libFuzzer exited {code} (see {log_path})"]})
    return result


def _last_cov(text: str) -> int:
    found = re.findall(r"cov: (\d+)", text)
    return int(found[-1]) if found else 0


def _python_error(text: str) -> list:
    """The uncaught exception's last line, as atheris prints it."""
    lines = [line for line in text.splitlines() if re.match(r"^\w+(\.\w+)*(Error|Exception)", line)]
    return lines[-1:]


if __name__ == "__main__":
    _fuzz(sys.argv[1], sys.argv[2], sys.argv[3:])
