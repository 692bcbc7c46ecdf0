"""One Lambda cold start, from a fresh interpreter to the first answer, outside the venv.

Run it as `python -I -S lambda_sim/probe.py --app APP --efs-root ROOT --packages PKGS
--image FILE` (probe_command() below builds that line, run_probe() runs it): the interpreter
is isolated (no site-packages, no PYTHON* variables), sys.path holds only the standard
library, the unzipped app (as /var/task on Lambda) and whatever the function's own code adds
for XRAY_PACKAGES_PATH. The function is called as Lambda calls it,
app(event, context), with an API Gateway proxy event carrying the image base64-encoded.

Prints one JSON line: the answer's probabilities, the time of each phase, what the process read
(/proc/self/io, page faults), and with --record-opens every file it opened (Python-level opens
through an audit hook, plus the shared libraries mapped in /proc/self/maps).

Uses only the standard library until the app is imported: nothing of the repo or the venv.
"""
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

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


def main(argv) -> dict:
    # This folder's event and context modules, by path (see runner.py for why not by package);
    # only when run as the script: importing probe_command from lambda_sim loads neither.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import context
    import events
    sys.path.remove(here)
    del sys.modules["context"], sys.modules["events"]
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
    # the first thing load_classifier does on the torch backend
    from chalicelib.inference.torch_import import import_torch
    torch = import_torch(app_module.get_settings().packages_path)
    t2 = time.perf_counter()
    response = app_module.app(events.proxy_event("POST", "/xray", body, content_type),
                              context.LambdaContext("probe"))
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


def base_python() -> str:
    """The interpreter the venv was made from: `-I -S` then sees no site-packages at all."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def probe_command(app_dir: str, efs_root: str, image: str, packages: Optional[str] = None,
                  archive: Optional[str] = None, extract_to: Optional[str] = None,
                  record_opens: bool = False) -> List[str]:
    """The command line of one probe (paths may be str or Path)."""
    command = [base_python(), "-I", "-S", "-B", os.path.abspath(__file__), "--app", str(app_dir),
               "--efs-root", str(efs_root), "--image", str(image)]
    if packages is not None:
        command += ["--packages", str(packages)]
    if archive is not None:
        command += ["--archive", str(archive), "--extract-to", str(extract_to)]
    if record_opens:
        command.append("--record-opens")
    return command


def last_json(stdout: str) -> Dict:
    """The probe prints one JSON line last (the app's own log lines come before it)."""
    return json.loads(stdout.strip().splitlines()[-1])


def run_probe(command: List[str]) -> Dict:
    """Runs a probe_command() and answers its JSON, plus the wall time to its exit."""
    launch = time.time_ns()
    done = subprocess.run(command + ["--launch-ns", str(launch)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    wall = (time.time_ns() - launch) / 1e6
    if done.returncode != 0:
        raise RuntimeError(f"cold-start probe failed:\n{done.stderr[-3000:]}")
    result = last_json(done.stdout)
    result["ms"]["process_exit"] = wall
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
