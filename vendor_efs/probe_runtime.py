"""One Lambda cold start, from a fresh interpreter to the first answer, outside the venv.

Run it as `python -I vendor_efs/probe_runtime.py --app APP --efs-root ROOT --packages PKGS
--image FILE`: the interpreter is isolated (no site-packages, no PYTHON* variables), sys.path
holds only the standard library, the unzipped app (as /var/task on Lambda) and whatever the
function's own code adds for XRAY_PACKAGES_PATH. The function is called as Lambda calls it,
app(event, context), with an API Gateway proxy event carrying the image base64-encoded.

Prints one JSON line: the answer's probabilities, the time of each phase, what the process read
(/proc/self/io, page faults), and with --record-opens every file it opened (Python-level opens
through an audit hook, plus the shared libraries mapped in /proc/self/maps).

Uses only the standard library until the app is imported: nothing of the repo or the venv.
"""
import base64
import json
import os
import sys
import time

STARTED_NS = time.time_ns()  # as early as the probe can note it; --launch-ns is the caller's


def _argument(argv, name, default=None):
    if name in argv:
        return argv[argv.index(name) + 1]
    return default


def _proc_io() -> dict:
    try:
        with open("/proc/self/io") as stats:
            return {key: int(value) for key, value in
                    (line.split(": ") for line in stats.read().splitlines())}
    except OSError:
        return {}


def _mapped_files() -> set:
    files = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                files.add(parts[5].strip())
    return files


def _extract(archive: str, into: str) -> tuple:
    """Unpacks a tar of the packages tree into a fresh folder (as a function would into /tmp)."""
    import tarfile
    started = time.perf_counter()
    partial = into + ".partial"
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(partial, filter="fully_trusted")  # our own archive, built by us
    os.rename(partial, into)
    return (time.perf_counter() - started) * 1000, into


def proxy_event(body: bytes, content_type: str) -> dict:
    headers = {"Host": "example.execute-api.eu-west-1.amazonaws.com", "Accept": "*/*",
               "Content-Type": content_type, "X-Forwarded-Proto": "https"}
    return {
        "resource": "/xray", "path": "/xray", "httpMethod": "POST",
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": "/xray", "httpMethod": "POST", "path": "/api/xray",
                           "stage": "api", "requestId": "probe", "identity": {
                               "sourceIp": "203.0.113.7"}},
        "body": base64.b64encode(body).decode("ascii"), "isBase64Encoded": True,
    }


class LambdaContext:
    function_name = "chest-xray-probe"
    memory_limit_in_mb = 3008
    aws_request_id = "probe"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 28_000


def main(argv) -> dict:
    app_dir = os.path.abspath(_argument(argv, "--app"))
    efs_root = os.path.abspath(_argument(argv, "--efs-root"))
    packages = _argument(argv, "--packages")
    image = _argument(argv, "--image")
    launch_ns = int(_argument(argv, "--launch-ns", STARTED_NS))
    opened = []
    if "--record-opens" in argv:
        def hook(event, args):
            if event == "open" and isinstance(args[0], (str, bytes)):
                opened.append(os.fsdecode(args[0]))
        sys.addaudithook(hook)

    # -I keeps the script's own folder at sys.path[0]; the function would not see it.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, app_dir)  # Lambda: /var/task comes first
    os.environ["XRAY_EFS_ROOT"] = efs_root
    os.environ.pop("XRAY_MODEL_PATH", None)
    if packages:
        os.environ["XRAY_PACKAGES_PATH"] = os.path.abspath(packages)
    else:
        os.environ.pop("XRAY_PACKAGES_PATH", None)
    with open(image, "rb") as source:
        body = source.read()
    content_type = "application/dicom" if image.endswith(".dcm") else "image/png"
    io_start = _proc_io()

    extract_ms = None
    archive = _argument(argv, "--archive")
    if archive:  # the alternative measured by the benchmarks: one archive, unpacked to /tmp
        extract_ms, packages = _extract(archive, _argument(argv, "--extract-to"))
        os.environ["XRAY_PACKAGES_PATH"] = packages

    t0 = time.perf_counter()
    import app as app_module  # Lambda's init phase: the handler module (chalice, app.py)
    t1 = time.perf_counter()
    from chalicelib.runtime import import_torch  # the first thing load_classifier does
    torch = import_torch(app_module.get_settings().packages_path)
    t2 = time.perf_counter()
    response = app_module.app(proxy_event(body, content_type), LambdaContext())
    t3 = time.perf_counter()
    answer = json.loads(response["body"])
    if response["statusCode"] != 200:
        raise SystemExit(f"the function answered {response['statusCode']}: {answer}")
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    io_end = _proc_io()
    timings = answer["timings_ms"]
    result = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_file": torch.__file__,
        "flags_isolated": sys.flags.isolated,
        "probabilities": {row["label"]: row["probability"] for row in answer["findings"]},
        "ms": {
            "interpreter_start": (STARTED_NS - launch_ns) / 1e6,
            "extract": extract_ms,
            "import_app": (t1 - t0) * 1000,
            "import_torch": (t2 - t1) * 1000,
            "first_request": (t3 - t2) * 1000,
            "model_load": timings["model_load"],
            "decode": timings["decode"],
            "preprocess": timings["preprocess"],
            "inference": timings["inference"],
            "to_first_answer": (time.time_ns() - launch_ns) / 1e6,
        },
        "modules": len(sys.modules),
        "io": {key: io_end.get(key, 0) - io_start.get(key, 0) for key in io_end},
        "faults": {"minor": usage.ru_minflt, "major": usage.ru_majflt},
        "max_rss_mb": usage.ru_maxrss / 1024,
        "sys_path": list(sys.path),
    }
    if "--record-opens" in argv:
        result["opened"] = sorted(set(opened) | _mapped_files())
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
