"""python -m benchmarks [NAME ...] [options]: runs the named benchmarks (default: all), prints
their tables and writes build/benchmarks/<name>.json.

    warm         ours vs the naive serving path at 1 and 2 CPUs: warm latency (PNG, JPEG, DICOM
                 in JPEG Baseline and JPEG 2000 lossy and lossless, a PNG with ?heatmap, through
                 the Lambda handler), bare forward, cold start, peak RSS, the CPU floor; ours
                 with reduced decoding; --before REF: another commit's code in the same run
    cold-start   fresh process to first answer, naive vs stripped EFS payload vs one archive
    candidates   the forward-pass candidates (eager, channels_last, TorchScript, oneDNN,
                 torch.export, onnxruntime) at 1 and 2 CPUs
    load         locust against a fresh `chalice local`: requests/s, p50/p95/p99 and failures
                 per format, the model loaded once
    jobs         the upload-jobs path on scripts/serve (chalice local, moto, the relay): a 7 MB
                 DICOM from upload to result, split into upload, event, model wait and
                 classification, beside POST /xray for the same radiograph
    heatmap      what ?heatmap costs on onnxruntime (closed-form Grad-CAM, numpy) at 1 and 2
                 CPUs: the forward with and without the feature map, each step, the handler
    faults       the model-store fault table: each broken store's answer, /health, time to
                 answer and recovery without a restart (correctness, not speed)
    fidelity     reduced decoding (JPEG 2000 levels, JPEG DCT scales) against every pixel, per
                 file and level: model-input and probability differences, decode times
    decode-memory  peak memory of decoding a 30 MB uncompressed DICOM and the JPEG 2000 chests

A benchmark whose report lists "problems" (a failed request, a second model load) makes the
command exit non-zero once every named benchmark has run.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks import (
    candidates,
    cold_start_cli,
    decode_memory,
    faults,
    fidelity,
    heatmap,
    jobs,
    load,
    warm,
)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "build" / "benchmarks"
# name -> module with add_arguments(parser) and run(args) -> (report dict, table text).
BENCHMARKS = {"warm": warm, "cold-start": cold_start_cli, "candidates": candidates,
              "load": load, "jobs": jobs, "faults": faults, "fidelity": fidelity,
              "decode-memory": decode_memory, "heatmap": heatmap}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*",
                        help=f"which benchmarks (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes (%(default)s)")
    for module in BENCHMARKS.values():
        module.add_arguments(parser)
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.names or list(BENCHMARKS):
        started = time.perf_counter()
        report, text = BENCHMARKS[name].run(args)
        report["machine"] = {"platform": platform.platform(), "processor": platform.machine(),
                             "cpus": os.cpu_count(), "load_average": list(os.getloadavg())}
        report["seconds"] = round(time.perf_counter() - started, 1)
        target = args.out / f"{name.replace('-', '_')}.json"
        target.write_text(json.dumps(report, indent=1) + "\n")
        print(text)
        print(f"\nbenchmarks: {name} took {report['seconds']:.0f} s; wrote {target}")
        if report.get("problems"):
            failed.append(name)
    if failed:
        sys.exit(f"benchmarks: {', '.join(failed)} found problems (see above)")


if __name__ == "__main__":
    main()
