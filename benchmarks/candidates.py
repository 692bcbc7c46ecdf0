"""`python -m benchmarks candidates`: the forward-pass candidates the issue names, on our
DenseNet-121 with the demo weights and one real preprocessed radiograph, at 1 and 2 CPUs. Each
candidate runs in its own process pinned to those CPUs, so none inherits another's threads or
caches:

    eager            torch eager fp32, inference_mode (what the naive path runs)
    channels_last    the same, weights and input in channels-last memory format
    torchscript      torch.jit.trace, then torch.jit.freeze
    torchscript+onednn   the frozen trace passed through torch.jit.optimize_for_inference, which
                     folds batch-norms into convolutions and runs them as oneDNN (MKLDNN) ops
    torch.export     torch.export.export(...).module()
    onnxruntime      the served backend: the model's ONNX graph (chalicelib/inference/backends.py)

Two passes run every candidate in turn; each keeps its faster pass. Prints, for each: forward
p50 and p95, speed-up over eager, how long the candidate took to prepare (weights, then trace,
freeze, export or session; torch's import not counted) and its first call, and the largest
difference of its probabilities from eager's.

    python -m benchmarks.candidates NAME CPUS WORKDIR REPS   (one candidate; the parent's job)
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

CANDIDATES = ("eager", "channels_last", "torchscript", "torchscript+onednn", "torch.export",
              "onnxruntime")
CPU_COUNTS = (1, 2)
WARM_UP = 3
MARK = "@@candidate "


def add_arguments(parser) -> None:
    group = parser.add_argument_group("candidates")
    group.add_argument("--candidate-reps", type=int, default=30,
                       help="timed forwards per candidate process (default 30)")
    group.add_argument("--candidate-passes", type=int, default=2,
                       help="passes over all candidates; each keeps its fastest (default 2)")


def _prepare(name: str, network: Any, example: Any, torch: Any) -> Callable[[Any], Any]:
    if name == "eager":
        return network
    if name == "channels_last":
        fast = network.to(memory_format=torch.channels_last)
        return lambda x: fast(x.contiguous(memory_format=torch.channels_last))
    if name.startswith("torchscript"):
        frozen = torch.jit.freeze(torch.jit.trace(network, example))
        return torch.jit.optimize_for_inference(frozen) if name.endswith("onednn") else frozen
    if name == "torch.export":
        return torch.export.export(network, (example,)).module()
    raise ValueError(f"unknown candidate {name!r}")


def measure_one(name: str, cpus: int, work: Path, reps: int) -> Dict[str, Any]:
    """In the child: build the candidate, time it, answer its figures and outputs."""
    import numpy as np

    from chalicelib.inference.classifier import load_classifier
    batch = np.load(work / "batch.npy")
    backend = "onnxruntime" if name == "onnxruntime" else "torch"
    if backend == "torch":
        import torch  # noqa: F401  (imported before the clock starts: a cost all torch ones share)
    started = time.perf_counter()
    classifier = load_classifier(work / "efs" / "models" / "current", None, backend)
    if backend == "onnxruntime":
        forward: Callable[[], List[float]] = lambda: classifier.inference(batch)  # noqa: E731
    else:
        import torch
        torch.set_num_threads(cpus)
        example = torch.from_numpy(batch)
        with torch.inference_mode():
            run = _prepare(name, classifier.torch_backend().network, example, torch)

        def forward() -> List[float]:
            with torch.inference_mode():
                return torch.sigmoid(run(example))[0].tolist()
    prepared = time.perf_counter()
    outputs = forward()
    first_call = time.perf_counter()
    for _ in range(WARM_UP):
        forward()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        forward()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"p50": round(statistics.median(times), 2),
            "p95": round(times[min(len(times) - 1, int(0.95 * len(times)))], 2),
            "prepare_ms": round((prepared - started) * 1000),
            "first_call_ms": round((first_call - prepared) * 1000, 1), "outputs": outputs}


def _run_child(name: str, cpus: int, work: Path, reps: int) -> Dict[str, Any]:
    chosen = sorted(os.sched_getaffinity(0))[:cpus]
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.candidates", name, str(cpus), str(work), str(reps)],
        cwd=repo, capture_output=True, text=True, timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": str(cpus)},
        preexec_fn=lambda: os.sched_setaffinity(0, chosen))
    for line in result.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": last_line[:200]}


def run(args):
    from benchmarks.warm import prepare
    work = args.out / "candidates-work"
    prepare(work)  # the demo model and the radiographs, as the warm benchmark uses them
    _write_batch(work)
    report: Dict[str, Any] = {"reps": args.candidate_reps, "passes": args.candidate_passes,
                              "by_cpus": {}}
    for cpus in CPU_COUNTS:
        # Passes over all candidates in turn, each candidate's fastest pass kept: on this
        # shared machine a busy stretch only ever slows a run, and it hits each pass elsewhere.
        passes = [{name: _run_child(name, cpus, work, args.candidate_reps) for name in CANDIDATES}
                  for _ in range(args.candidate_passes)]
        rows = {name: min((found[name] for found in passes),
                          key=lambda row: row.get("p50", float("inf")))
                for name in CANDIDATES}
        reference = rows["eager"].get("outputs")
        for row in rows.values():
            outputs = row.pop("outputs", None)
            if outputs is not None and reference is not None:
                row["max_abs_difference_vs_eager"] = max(
                    abs(a - b) for a, b in zip(outputs, reference))
                row["speedup_vs_eager"] = round(rows["eager"]["p50"] / row["p50"], 2)
        report["by_cpus"][str(cpus)] = rows
    return report, table(report)


def _write_batch(work: Path) -> None:
    """The warm benchmark's model input (the candidates share it)."""
    import numpy as np

    from benchmarks.warm_worker import png_model_input
    from chalicelib.inference.classifier import load_classifier
    classifier = load_classifier(work / "efs" / "models" / "current", None, "onnxruntime")
    np.save(work / "batch.npy", png_model_input(classifier, str(work)))


def table(report: Dict[str, Any]) -> str:
    lines = [f"Forward-pass candidates: DenseNet-121, batch 1, 224x224, fp32; "
             f"{report['reps']} timed forwards per process, the faster of "
             f"{report['passes']} passes",
             "",
             f"{'cpus':>4} {'candidate':20} {'p50 ms':>8} {'p95 ms':>8} {'vs eager':>9} "
             f"{'prepare ms':>11} {'first call ms':>14} {'max |dp|':>9}"]
    for cpus, rows in report["by_cpus"].items():
        for name, row in rows.items():
            if "error" in row:
                lines.append(f"{cpus:>4} {name:20} failed: {row['error']}")
                continue
            lines.append(
                f"{cpus:>4} {name:20} {row['p50']:8.1f} {row['p95']:8.1f} "
                f"{row.get('speedup_vs_eager', 0):8.2f}x {row['prepare_ms']:11,} "
                f"{row['first_call_ms']:14,.1f} {row.get('max_abs_difference_vs_eager', 0):9.1e}")
    return "\n".join(lines)


if __name__ == "__main__":
    figures = measure_one(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    print(MARK + json.dumps(figures), flush=True)
