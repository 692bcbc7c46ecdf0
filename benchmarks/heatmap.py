"""`python -m benchmarks heatmap`: what a heatmap costs on the default backend (onnxruntime, the
closed-form Grad-CAM in numpy), at 1 and 2 CPUs, each in its own process pinned to those CPUs
(taskset; onnxruntime then runs that many intra-op threads). Measured side by side, in
alternating order, many repetitions, medians:

    forward    the graph exported before the feature map output (logits only), today's graph
               fetching the logits only (a plain request) and fetching the feature map too (a
               heatmap request)
    steps      the closed form, the numpy upsampling, the overlay and its PNG encoding
    handler    app(event, context) for a PNG without and with ?heatmap=top, and the difference
               (wall time, and the process's CPU time, which other jobs on the machine move less)
    torch      whether the worker ever imported torch (it must not: the numbers are torch-free)
"""
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "build" / "benchmarks" / "heatmap"
IMAGE = REPO.parent / "shared" / "fixtures" / "cxr" / "nih_00000001_000_cardiomegaly.png"
CPU_COUNTS = (1, 2)
MARK = "HEATMAP-BENCHMARK "


def add_arguments(parser) -> None:
    group = parser.add_argument_group("heatmap")
    group.add_argument("--heatmap-reps", type=int, default=200,
                       help="timed repetitions of each variant (default 200)")


def _median_ms(samples: List[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def _interleaved(variants: Dict[str, Callable[[], Any]], reps: int,
                 cpu: bool = False) -> Dict[str, float]:
    """Median ms of each, the variants taking turns (order reversed every other round); with
    cpu, also the median CPU time of the process (all threads) as "<name>_cpu": on a machine
    shared with other jobs it moves less than the wall time."""
    for run in variants.values():  # warm up: onnxruntime's threads, caches, first allocations
        for _ in range(3):
            run()
    times: Dict[str, List[float]] = {name: [] for name in variants}
    cpu_times: Dict[str, List[float]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            started, started_cpu = time.perf_counter(), time.process_time()
            variants[name]()
            times[name].append(time.perf_counter() - started)
            cpu_times[name].append(time.process_time() - started_cpu)
    figures = {name: _median_ms(samples) for name, samples in times.items()}
    if cpu:
        figures.update({f"{name}_cpu": _median_ms(samples)
                        for name, samples in cpu_times.items()})
    return figures


def worker(store: Path, reps: int) -> Dict[str, Any]:
    """In the pinned process: every figure for this CPU count."""
    import numpy as np
    import onnx

    from chalicelib.inference import gradcam
    from chalicelib.inference.backends import OnnxBackend, cpu_threads
    from chalicelib.inference.classifier import load_classifier

    classifier = load_classifier(store / "models" / "current", None, backend="onnxruntime")
    folder = classifier.manifest.directory
    weights = (folder / "model.safetensors").read_bytes()
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    kept = [output for output in graph.graph.output if output.name == "logits"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    before = OnnxBackend(graph.SerializeToString(), {"model.safetensors": weights})
    now = classifier._backend
    from chalicelib.imaging.dispatch import decode
    from chalicelib.imaging.image import Limits
    batch = classifier.preprocess(decode(IMAGE.read_bytes(), "image/png",
                                         Limits(40_000_000, 32)).pixels)
    logits, features = now.logits_and_features(batch)
    forward = _interleaved({
        "graph_before_logits": lambda: before.logits(batch),
        "graph_now_logits": lambda: now.logits(batch),
        "graph_now_logits_and_features": lambda: now.logits_and_features(batch),
    }, reps)
    head, weight = classifier._closed_form
    cam = gradcam.closed_form_cam(features[0], weight[10], head.relu)
    heat = gradcam.upsample(gradcam.normalised(cam), 224)
    rgb = gradcam.overlay(classifier._recipe.inverse(batch), heat)
    steps = _interleaved({
        "closed_form": lambda: gradcam.closed_form_cam(features[0], weight[10], head.relu),
        "upsample": lambda: gradcam.upsample(gradcam.normalised(cam), 224),
        "overlay": lambda: gradcam.overlay(classifier._recipe.inverse(batch), heat),
        "png_encode": lambda: gradcam.png_data_url(rgb),
    }, reps)
    handler = _handler_figures(store, reps)
    return {"cpus": cpu_threads(), "forward_ms": forward, "steps_ms": steps,
            "handler_ms": handler,
            "png_bytes": len(base64.b64decode(gradcam.png_data_url(rgb).split(",", 1)[1])),
            "same_logits": bool(np.array_equal(before.logits(batch), logits)),
            "torch_imported": any(m.split(".")[0] == "torch" for m in sys.modules)}


def _handler_figures(store: Path, reps: int) -> Dict[str, float]:
    os.environ["XRAY_EFS_ROOT"] = str(store)
    os.environ["XRAY_AUTH"] = "none"
    os.environ.pop("XRAY_BACKEND", None)
    import app as app_module
    from lambda_sim.context import LambdaContext
    from lambda_sim.events import proxy_event
    body = IMAGE.read_bytes()
    events = {"plain": proxy_event("POST", "/xray", body, "image/png"),
              "heatmap": proxy_event("POST", "/xray", body, "image/png",
                                     query={"heatmap": "top"})}
    context = LambdaContext("benchmark")
    import logging
    logging.disable(logging.CRITICAL)  # the per-request log lines are not what is measured
    saved = sys.stdout
    sys.stdout = open(os.devnull, "w")  # the metrics (EMF) lines go to stdout
    try:
        def call(event):
            response = app_module.app(event, context)
            assert response["statusCode"] == 200, response["body"][:300]
        figures = _interleaved({name: (lambda e=e: call(e)) for name, e in events.items()}, reps,
                               cpu=True)
    finally:
        sys.stdout.close()
        sys.stdout = saved
    figures["heatmap_minus_plain"] = round(figures["heatmap"] - figures["plain"], 3)
    figures["heatmap_minus_plain_cpu"] = round(figures["heatmap_cpu"] - figures["plain_cpu"], 3)
    return figures


def run(args):
    from vendor_efs.models.demo import install_demo
    shutil.rmtree(WORK, ignore_errors=True)
    install_demo(WORK / "efs" / "models")
    report: Dict[str, Any] = {"image": IMAGE.name, "reps": args.heatmap_reps, "by_cpus": {}}
    for cpus in CPU_COUNTS:
        if cpus > (os.cpu_count() or 1):
            continue
        command = ["taskset", "-c", ",".join(str(c) for c in range(cpus)), sys.executable,
                   "-m", "benchmarks.heatmap", str(WORK / "efs"), str(args.heatmap_reps)]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"heatmap worker failed:\n{done.stderr[-3000:]}")
        line = next(x for x in done.stdout.splitlines()[::-1] if x.startswith(MARK))
        report["by_cpus"][str(cpus)] = json.loads(line[len(MARK):])
    report["problems"] = [f"{cpus} CPUs: torch was imported" for cpus, row
                          in report["by_cpus"].items() if row["torch_imported"]]
    return report, table(report)


def table(report: Dict[str, Any]) -> str:
    rows = report["by_cpus"]
    names = list(rows)

    def line(label: str, cell: Callable[[Dict[str, Any]], str]) -> str:
        return f"{label:<46}" + "".join(f"{cell(rows[n]):>12}" for n in names)

    def ms(group: str, key: str) -> Callable[[Dict[str, Any]], str]:
        return lambda row: f"{row[group][key]:.2f}"

    return "\n".join([
        f"{'heatmap, ' + report['image'][:28] + ' (median ms)':<46}"
        + "".join(f"{n + ' CPU':>12}" for n in names),
        line("forward: graph before (logits only)", ms("forward_ms", "graph_before_logits")),
        line("forward: graph now, logits (plain request)", ms("forward_ms", "graph_now_logits")),
        line("forward: graph now, + feature map (heatmap)",
             ms("forward_ms", "graph_now_logits_and_features")),
        line("closed-form Grad-CAM (numpy)", ms("steps_ms", "closed_form")),
        line("upsample 7x7 -> 224x224 (numpy)", ms("steps_ms", "upsample")),
        line("overlay (numpy)", ms("steps_ms", "overlay")),
        line("PNG encode (Pillow, compress_level=1)", ms("steps_ms", "png_encode")),
        line("handler: PNG request", ms("handler_ms", "plain")),
        line("handler: PNG request ?heatmap=top", ms("handler_ms", "heatmap")),
        line("handler: heatmap - plain", ms("handler_ms", "heatmap_minus_plain")),
        line("handler: heatmap - plain, process CPU time", ms("handler_ms",
                                                               "heatmap_minus_plain_cpu")),
        line("overlay PNG (bytes)", lambda row: f"{row['png_bytes']:,}"),
        line("torch imported", lambda row: str(row["torch_imported"])),
    ])


if __name__ == "__main__":
    print(MARK + json.dumps(worker(Path(sys.argv[1]), int(sys.argv[2]))))
