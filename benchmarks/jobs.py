"""`python -m benchmarks jobs`: the upload-jobs path end to end on scripts/serve (the local
stack: chalice local, moto, the relay), for a file too large for POST /xray.

The shared RG1 chest stored uncompressed (about 7 MB, benchmarks/samples.large_dicom) is sent
through the jobs path `--job-runs` times, one after the other on one fresh server, the first
run cold (the relay's process loads the model then): POST /xray/jobs, the presigned multipart
POST to moto, then GET /xray/jobs/{id} every POLL_S until the job is final. Each run is split
by when the poller first saw each status: the upload itself; upload end -> claimed (S3 ->
EventBridge -> SQS -> the relay -> the worker's claim); queued -> running (waiting for the
model); running -> succeeded, of which the classification's own timings_ms. For comparison, the
same file's POST /xray (413: over the synchronous limit) and the same radiograph as its JPEG
2000 original through POST /xray (cold, then warm). A job that does not succeed, or a
synchronous answer other than those, is a problem."""
import statistics
import time
from typing import Any, Dict, List, Optional

from benchmarks.local_server import local_server
from benchmarks.samples import RG1_J2K_NAME, large_dicom
from benchmarks.warm import FIXTURES

POLL_S = 0.02
TIMEOUT_S = 600  # one job, or one request: a bound, not a figure
CONTENT_TYPE = "application/dicom"
PARTS = ("upload_ms", "to_claimed_ms", "model_wait_ms", "running_ms", "classify_ms",
         "total_ms")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("jobs")
    group.add_argument("--job-runs", type=int, default=5,
                       help="jobs submitted one after another, the first cold (default 5)")


def _ms(start: float, end: Optional[float]) -> Optional[float]:
    return None if end is None else round((end - start) * 1000, 1)


def run_job(base: str, body: bytes, content_type: str = CONTENT_TYPE) -> Dict[str, Any]:
    """One job, timed: its parts (ms; None for a status the poller never saw) and outcome."""
    import requests
    started = time.perf_counter()
    created = requests.post(f"{base}/xray/jobs", json={"content_type": content_type,
                                                       "size": len(body)}, timeout=TIMEOUT_S)
    created.raise_for_status()
    job = created.json()
    upload = job["upload"]
    upload_start = time.perf_counter()
    sent = requests.post(upload["url"], data=upload["fields"],
                         files={"file": ("image", body, content_type)}, timeout=TIMEOUT_S)
    upload_end = time.perf_counter()
    sent.raise_for_status()
    seen: Dict[str, float] = {}
    deadline = upload_end + TIMEOUT_S
    while True:
        status = requests.get(job["status_url"], timeout=TIMEOUT_S).json()
        now = time.perf_counter()
        seen.setdefault(status["status"], now)
        if status["status"] in ("succeeded", "failed", "expired") or now > deadline:
            break
        time.sleep(POLL_S)
    final = seen.get(status["status"], now)
    claimed = min((seen[s] for s in ("queued", "running") if s in seen), default=None)
    running = seen.get("running")
    timings = (status.get("result") or {}).get("timings_ms") or {}
    return {"status": status["status"], "error": status.get("error"),
            "create_ms": _ms(started, upload_start),
            "upload_ms": _ms(upload_start, upload_end),
            "to_claimed_ms": _ms(upload_end, claimed),
            "model_wait_ms": _ms(seen["queued"], running) if "queued" in seen else None,
            "running_ms": _ms(running, final) if running is not None else None,
            "classify_ms": round(sum(timings.values()), 1) if timings else None,
            "total_ms": _ms(upload_start, final)}


def post_sync(base: str, body: bytes, content_type: str = CONTENT_TYPE) -> Dict[str, Any]:
    import requests
    started = time.perf_counter()
    answer = requests.post(f"{base}/xray", data=body, headers={"Content-Type": content_type},
                           timeout=TIMEOUT_S)
    code = answer.json().get("Code") if answer.status_code != 200 else None
    return {"status": answer.status_code, "code": code, "ms": _ms(started, time.perf_counter())}


def run(args) -> tuple:
    args.out.mkdir(parents=True, exist_ok=True)
    server_log = args.out / "jobs_server.log"
    body = large_dicom(FIXTURES)
    original = (FIXTURES / RG1_J2K_NAME).read_bytes()
    with local_server(server_log, XRAY_AUTH="none", PYTHONUNBUFFERED="1") as (base, _):
        runs = [run_job(base, body) for _ in range(args.job_runs)]
        too_large = post_sync(base, body)
        original_runs = [post_sync(base, original) for _ in range(max(2, args.job_runs))]
    report = build_report(len(body), len(original), runs, too_large, original_runs)
    report["server_log"] = str(server_log)
    return report, table(report)


def _median(rows: List[Dict[str, Any]], key: str) -> Optional[float]:
    values = [row[key] for row in rows if row.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


def build_report(size: int, original_size: int, runs: List[Dict[str, Any]],
                 too_large: Dict[str, Any],
                 original_runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    warm = runs[1:]
    report: Dict[str, Any] = {
        "file": {"what": "the shared RG1 chest CR, decoded and stored uncompressed",
                 "bytes": size, "content_type": CONTENT_TYPE},
        "poll_ms": POLL_S * 1000, "runs": runs,
        "cold": runs[0] if runs else None,
        "warm_median": {part: _median(warm, part) for part in PARTS} if warm else None,
        "sync": {"same_file": too_large,
                 "original": {"bytes": original_size, "content_type": CONTENT_TYPE,
                              "cold_ms": original_runs[0]["ms"],
                              "warm_median_ms": _median(original_runs[1:], "ms"),
                              "statuses": sorted({r["status"] for r in original_runs})}},
    }
    problems = [f"run {i + 1}: the job ended {r['status']} ({(r['error'] or {}).get('Code')})"
                for i, r in enumerate(runs) if r["status"] != "succeeded"]
    if too_large["status"] != 413:
        problems.append(f"POST /xray answered {too_large['status']} for the {size:,}-byte file, "
                        "not 413")
    if report["sync"]["original"]["statuses"] != [200]:
        problems.append("POST /xray did not classify the JPEG 2000 original every time")
    report["problems"] = problems
    return report


def table(report: Dict[str, Any]) -> str:
    def ms(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.0f}"

    runs = report["runs"]
    lines = [f"jobs: a {report['file']['bytes']:,}-byte uncompressed DICOM (the shared RG1 "
             f"chest) through the jobs path of scripts/serve, {len(runs)} run(s) one after "
             f"another, the first cold; ms, statuses polled every {report['poll_ms']:.0f} ms",
             f"{'run':<12}{'upload':>8}{'to claimed':>12}{'model wait':>12}{'running':>9}"
             f"{'(classify)':>12}{'upload start -> succeeded':>27}"]

    def row(name: str, r: Dict[str, Any]) -> str:
        return (f"{name:<12}{ms(r['upload_ms']):>8}{ms(r['to_claimed_ms']):>12}"
                f"{ms(r['model_wait_ms']):>12}{ms(r['running_ms']):>9}"
                f"{'(' + ms(r['classify_ms']) + ')':>12}{ms(r['total_ms']):>27}")

    for i, r in enumerate(runs):
        lines.append(row(f"{i + 1}{' (cold)' if i == 0 else ''}", r))
    if report["warm_median"]:
        lines.append(row("warm median", report["warm_median"]))
    same, original = report["sync"]["same_file"], report["sync"]["original"]
    lines.append(f"POST /xray, the same file: {same['status']} {same['code'] or ''} in "
                 f"{ms(same['ms'])} ms")
    lines.append(f"POST /xray, the same radiograph as its {original['bytes']:,}-byte JPEG 2000 "
                 f"original: {'/'.join(map(str, original['statuses']))}, cold "
                 f"{ms(original['cold_ms'])} ms, warm median {ms(original['warm_median_ms'])} ms")
    lines.append("(a status the poller never saw shows -, its time counted in the next part; "
                 "the model's load is the cold run's model wait)")
    lines += [f"PROBLEM: {problem}" for problem in report["problems"]]
    return "\n".join(lines)
