"""`python -m benchmarks load`: locust, headless, against a real `chalice local` on loopback.

A fresh server (scripts/serve, the demo model, nothing warmed: the first requests pay the model
load) takes `--users` concurrent users posting the shared radiographs as PNG, JPEG (made from
the PNGs) and DICOM (uncompressed, JPEG baseline, JPEG 2000) to POST /xray for `--duration`
seconds, with no think time. Prints, per format and in total: requests, requests/s, exact
p50/p95/p99 and failures; how many times the model loaded, from the server's own log and
cross-checked against /health; the server's peak RSS. Any failure (non-2xx, an answer without
findings, no answer) or a load count other than one is a problem: the command then exits
non-zero. The server's log is kept beside the JSON (load_server.log)."""
import json
import math
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

from benchmarks.local_server import REPO, local_server
from benchmarks.samples import jpeg_of
from benchmarks.warm import FIXTURES

FORMATS = ("png", "jpeg", "dicom")
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "dicom": "application/dicom"}
PERCENTILES = (50, 95, 99)
REQUEST_TIMEOUT_S = 120  # one request, and how long users may take to finish theirs at the end
# The model's load line, as chalicelib/inference/lazy.py logs it ("model {...} loaded in N
# ms"), plain or as the message of a JSON log line.
MODEL_LOADED = re.compile(r"\bmodel\b.*\bloaded in [\d.]+ ?ms")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("load")
    group.add_argument("--users", type=int, default=8,
                       help="concurrent locust users, each posting back to back (default 8)")
    group.add_argument("--duration", type=float, default=60.0,
                       help="seconds of load, the model's first load included (default 60)")
    group.add_argument("--spawn-rate", type=float, default=None,
                       help="users started per second (default: all in the first second)")


def count_model_loads(server_log: str) -> int:
    """How many times the server logged loading the model. The one place that knows what that
    line looks like: adapt it here if the log format changes."""
    return sum(1 for line in server_log.splitlines() if MODEL_LOADED.search(line))


def percentile(values: List[float], percent: float) -> Optional[float]:
    """Nearest rank: the smallest value that at least `percent` % of the values do not
    exceed (what locust reports, without its rounding to two significant digits)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def samples(work: Path) -> List[Dict[str, str]]:
    """Every shared radiograph, as the format it is, plus a JPEG of each PNG."""
    found = []
    for path in sorted(FIXTURES.iterdir()):
        if path.suffix == ".png":
            jpeg = work / f"{path.stem}.jpg"
            jpeg.write_bytes(jpeg_of(path))
            found += [("png", path), ("jpeg", jpeg)]
        elif path.suffix == ".dcm":
            found.append(("dicom", path))
    return [{"format": fmt, "file": path.name, "content_type": CONTENT_TYPES[fmt],
             "path": str(path)} for fmt, path in found]


def summarize(requests: List[Dict[str, Any]], key: str) -> Dict[str, Dict[str, Any]]:
    """Count, failures and exact percentiles (ms) per value of `key`, from every request."""
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for request in requests:
        groups.setdefault(request[key], []).append(request)
    return {name: _figures(rows) for name, rows in sorted(groups.items())}


def _figures(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    times = [row["ms"] for row in rows]
    return {"requests": len(rows), "failures": sum(not row["ok"] for row in rows),
            **{f"p{p}_ms": percentile(times, p) for p in PERCENTILES},
            "max_ms": max(times) if times else None}


def peak_rss_mb(pid: int) -> Optional[float]:
    """The process's high-water resident set (VmHWM), or None where /proc has no such field."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else None


def run(args) -> tuple:
    args.out.mkdir(parents=True, exist_ok=True)
    server_log = args.out / "load_server.log"
    with tempfile.TemporaryDirectory(prefix="load-") as folder:
        work = Path(folder)
        posted = samples(work)
        # XRAY_AUTH=none: this measures the service, not an authorizer; PYTHONUNBUFFERED: the
        # log is read as it stands when the server is stopped
        with local_server(server_log, XRAY_AUTH="none", PYTHONUNBUFFERED="1") as (base, pid):
            config = {"host": base, "users": args.users,
                      "spawn_rate": args.spawn_rate or args.users, "duration_s": args.duration,
                      "request_timeout_s": REQUEST_TIMEOUT_S, "samples": posted}
            (work / "config.json").write_text(json.dumps(config))
            result = subprocess.run(
                [sys.executable, "-m", "benchmarks.load_worker", str(work / "config.json"),
                 str(work / "locust.json")], cwd=REPO, capture_output=True, text=True,
                timeout=args.duration + 2 * REQUEST_TIMEOUT_S + 60)
            if result.returncode != 0:
                raise RuntimeError("the locust worker failed:\n" + result.stderr[-3000:])
            locust = json.loads((work / "locust.json").read_text())
            with urllib.request.urlopen(f"{base}/health", timeout=30) as answer:
                health = json.loads(answer.read())
            rss = peak_rss_mb(pid)
    report = build_report(config, locust, health, server_log.read_text(), rss)
    report["server_log"] = str(server_log)
    return report, table(report)


def build_report(config: Dict[str, Any], locust: Dict[str, Any], health: Dict[str, Any],
                 server_log: str, peak_rss: Optional[float]) -> Dict[str, Any]:
    requests = locust["requests"]
    groups = summarize(requests, "format")
    by_format = {fmt: groups[fmt] for fmt in FORMATS if fmt in groups}  # in the table's order
    for name, figures in by_format.items():
        figures["requests_per_s"] = locust["by_format"][name]["requests_per_s"]
    total = {**_figures(requests), "requests_per_s": locust["total"]["requests_per_s"]}
    model = health.get("model", {})
    report: Dict[str, Any] = {
        "users": config["users"], "spawn_rate": config["spawn_rate"],
        "duration_s": config["duration_s"], "window_s": locust["window_s"],
        "samples": {fmt: [s["file"] for s in config["samples"] if s["format"] == fmt]
                    for fmt in FORMATS},
        "by_format": by_format, "by_file": summarize(requests, "file"), "total": total,
        "errors": locust["errors"], "user_exceptions": locust["user_exceptions"],
        "load_generator_cpu_warning": locust["load_generator_cpu_warning"],
        "model": {"loads_logged": count_model_loads(server_log), "state": model.get("state"),
                  "load_ms": model.get("load_ms"), "backend": model.get("backend")},
        "server": {"peak_rss_mb": peak_rss,
                   "tracebacks_logged": server_log.count("Traceback (most recent call last)")},
    }
    report["problems"] = problems(report, locust)
    return report


def problems(report: Dict[str, Any], locust: Dict[str, Any]) -> List[str]:
    """What makes the run a failure; empty when it is not."""
    found = []
    total = report["total"]
    if total["failures"]:
        found.append(f"{total['failures']} of {total['requests']} requests failed")
    if locust["total"]["requests"] != total["requests"]:
        found.append(f"locust counted {locust['total']['requests']} requests, "
                     f"the listener {total['requests']}")
    if report["user_exceptions"]:
        found.append(f"{len(report['user_exceptions'])} exception(s) in the locust user code")
    missing = [fmt for fmt in FORMATS if fmt not in report["by_format"]]
    if missing:
        found.append(f"no {', '.join(missing)} request was made")
    model = report["model"]
    if model["loads_logged"] != 1:
        found.append(f"the server logged {model['loads_logged']} model loads, not 1")
    if model["state"] != "ready" or model["load_ms"] is None:
        found.append(f"/health says the model is {model['state']} (load_ms {model['load_ms']})")
    if report["server"]["tracebacks_logged"]:
        found.append(f"the server logged {report['server']['tracebacks_logged']} traceback(s)")
    return found


def table(report: Dict[str, Any]) -> str:
    def ms(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.0f}"

    lines = [f"load: {report['users']} users for {report['duration_s']:g} s against chalice "
             f"local (POST /xray back to back, no think time; {report['window_s']:g} s from the "
             f"first request to the last answer)",
             f"{'format':<8}{'requests':>10}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
             f"{'max ms':>9}{'failures':>10}"]
    rows = [*report["by_format"].items(), ("total", report["total"])]
    for name, row in rows:
        lines.append(f"{name:<8}{row['requests']:>10}{row['requests_per_s']:>8.2f}"
                     f"{ms(row['p50_ms']):>9}{ms(row['p95_ms']):>9}{ms(row['p99_ms']):>9}"
                     f"{ms(row['max_ms']):>9}{row['failures']:>10}")
    model, server = report["model"], report["server"]
    lines.append(f"model loads: {model['loads_logged']} (server log); /health: {model['state']}, "
                 f"load_ms {model['load_ms']}, backend {model['backend']}")
    rss = server["peak_rss_mb"]
    lines.append(f"server peak RSS: {'-' if rss is None else f'{rss:.0f} MB'}")
    if report["load_generator_cpu_warning"]:
        lines.append("WARNING: locust itself ran out of CPU: the figures understate the server")
    for error in report["errors"]:
        lines.append(f"error ({error['format']}, {error['occurrences']}x): {error['error']}")
    lines += [f"PROBLEM: {problem}" for problem in report["problems"]]
    return "\n".join(lines)
