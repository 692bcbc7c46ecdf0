"""`python -m benchmarks warm`: our serving path against the naive one, at 1 and 2 CPUs. Each
side runs in its own process pinned to those CPUs (benchmarks/warm_worker.py), and the sides take
turns in short rounds. Prints, and writes as warm.json and warm.png: the cold start split into
import, model load, first answer and first heatmap (median of fresh processes); warm latency of
each request of warm_worker.REQUESTS (PNG, JPEG, DICOM in JPEG Baseline and JPEG 2000 lossy and
lossless, a PNG with a heatmap) through the real Lambda handler; the bare forward;
request/forward ratios; peak RSS; how far each forward is from this CPU's floor (DenseNet-121's
FLOPs over the best fp32 matmul rate); and what 1,000 images cost on Lambda at those sizes.

`--before REF` adds a side serving another commit's code (its tree from `git archive`, its own
demo model), so that a change's before and after come from one run on one machine."""
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.samples import jpeg_of, rg1_j2k_lossless
from benchmarks.warm_worker import IMAGES, MARK

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "cxr"
CPU_COUNTS = (1, 2)
WARM_UP = 2  # iterations per side before the measured ones
ROUND = 5  # timed iterations one side runs before the other takes its turn


def add_arguments(parser) -> None:
    group = parser.add_argument_group("warm")
    group.add_argument("--reps", type=int, default=40,
                       help="warm iterations per side and CPU count (default 40)")
    group.add_argument("--cold-runs", type=int, default=3,
                       help="fresh processes per side for the cold start (median; default 3)")
    group.add_argument("--before", metavar="REF",
                       help="also serve this git commit's code, as the \"before\" side")


@dataclass(frozen=True)
class Side:
    """One way of serving, run by warm_worker in its own processes."""
    name: str
    mode: str                          # warm_worker's: ours or naive
    args: Tuple[str, ...] = ()         # warm_worker's further arguments (a code tree)
    env: Dict[str, str] = field(default_factory=dict)  # on top of this process's environment


def sides(work: Path, before: Optional[str]) -> List[Side]:
    """ours first: it writes the input naive's bare forward reuses. "reduced" is ours with
    reduced decoding on (XRAY_REDUCED_DECODING) and a model that accepts it down to
    REDUCED_LEVEL."""
    from chalicelib.settings import REDUCED_DECODING
    chosen = [Side("ours", "ours"),
              Side("reduced", "ours", ("efs-reduced",), {REDUCED_DECODING: "true"})]
    if before:
        chosen.append(Side("before", "ours", ("efs-before", str(work / "before-tree"))))
    return chosen + [Side("naive", "naive")]


def prepare(work: Path, before: Optional[str] = None) -> None:
    from vendor_efs.models.demo import install_demo
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    version = install_demo(work / "efs" / "models")
    for kind, name in IMAGES.items():
        if (FIXTURES / name).exists():
            shutil.copy(FIXTURES / name, work / name)
    (work / IMAGES["jpeg"]).write_bytes(jpeg_of(FIXTURES / "nih_00000001_000_cardiomegaly.png"))
    (work / IMAGES["j2k_lossless"]).write_bytes(rg1_j2k_lossless(FIXTURES))
    reduced_store(work / "efs", work / "efs-reduced")
    import torch
    from safetensors.torch import load_file
    state = load_file(version / "model.safetensors")
    torch.save(state, work / "naive_state_dict.pt")  # what the article's torch.load reads
    if before:
        checkout(before, work / "before-tree", work / "efs-before" / "models")


# the coarsest level the "reduced" side's model accepts (the demo's manifest says nothing: 0)
REDUCED_LEVEL = 2


def reduced_store(store: Path, reduced: Path) -> None:
    """A copy of the demo store whose manifests accept reduced decoding down to REDUCED_LEVEL
    (the manifest's hash covers no manifest: the weights and graph stay the checked ones)."""
    from chalicelib.inference.store import MANIFEST_NAME, REDUCED_DECODING
    shutil.copytree(store, reduced, symlinks=True)
    for manifest in reduced.rglob(MANIFEST_NAME):
        if manifest.is_symlink():
            continue
        raw = json.loads(manifest.read_text())
        raw[REDUCED_DECODING] = {"coarsest_level": REDUCED_LEVEL}
        manifest.write_text(json.dumps(raw, indent=2))


def checkout(ref: str, tree: Path, models: Path) -> None:
    """`ref`'s files (git archive: no worktree is registered) and its own demo model, made by
    its own code: a store written by newer code need not be one older code accepts."""
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=REPO, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                    "from vendor_efs.models.demo import install_demo; "
                    "install_demo(Path(sys.argv[1]))", str(models)],
                   cwd=tree, check=True, capture_output=True)


def densenet_gflop() -> float:
    """Multiply-adds of every conv and linear layer at 224x224, times two."""
    import torch

    from chalicelib.inference.architectures.densenet import DenseNet
    network, macs = DenseNet(num_classes=18).eval(), [0]

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            macs[0] += output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, torch.nn.Linear):
            macs[0] += module.in_features * module.out_features
    for module in network.modules():
        module.register_forward_hook(count)
    with torch.no_grad():
        network(torch.zeros(1, 1, 224, 224))
    return 2 * macs[0] / 1e9


class Worker:
    """One side (benchmarks/warm_worker.py) in a process pinned to the first `cpus` CPUs."""

    def __init__(self, mode: str, cpus: int, work: Path, *args: str,
                 env: Optional[Dict[str, str]] = None) -> None:
        chosen = sorted(os.sched_getaffinity(0))[:cpus]
        self.mode, self.errors = mode, tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.warm_worker", mode, str(work), *args], cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=lambda: os.sched_setaffinity(0, chosen))

    def read(self) -> Any:
        for line in self.process.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        self.process.wait()
        self.errors.seek(0)
        raise RuntimeError(f"{self.mode} worker failed:\n{self.errors.read()[-3000:]}")

    def run(self, iterations: int) -> Any:
        self.process.stdin.write(f"{iterations}\n")
        self.process.stdin.flush()
        return self.read()

    def finish(self) -> Dict[str, Any]:
        final = self.run(0)
        self.process.wait(timeout=60)
        return final


def matmul_gflops(cpus: int, work: Path) -> float:
    worker = Worker("matmul", cpus, work, "15")
    rate = worker.read()["gflops"]
    worker.process.wait(timeout=60)  # its exit must not overlap the next measurement
    return rate


def summarise(samples: List[float]) -> Dict[str, float]:
    samples = sorted(samples)
    return {"p50": round(statistics.median(samples), 2),
            "p95": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 2)}


def measure(cpus: int, work: Path, args, chosen: List[Side]) -> Dict[str, Any]:
    """Cold starts: args.cold_runs fresh processes per side, median of each phase. Warm: the
    sides' last processes take turns: one untimed iteration, then ROUND timed ones."""
    colds: Dict[str, List[Dict[str, float]]] = {side.name: [] for side in chosen}
    live: Dict[str, Worker] = {}
    started_with: Dict[str, Dict[str, Any]] = {}
    for side in chosen:
        for run in range(args.cold_runs):
            worker = Worker(side.mode, cpus, work, *side.args, env=side.env)
            started = worker.read()
            colds[side.name].append(started["cold"])
            started_with[side.name] = started
            if run + 1 < args.cold_runs:
                worker.finish()
            else:
                live[side.name] = worker
    rate = matmul_gflops(cpus, work)
    samples: Dict[str, List[Dict[str, float]]] = {name: [] for name in live}
    for worker in live.values():
        worker.run(WARM_UP)
    for done in range(0, args.reps, ROUND):
        for name, worker in live.items():
            # The first iteration after another side's turn finds the caches and its own
            # threads cold: its first request took 7 ms longer (measured), a cost of taking
            # turns, which the bare forward at the iteration's end no longer pays. Untimed.
            worker.run(1)
            samples[name] += worker.run(min(ROUND, args.reps - done))
        if done < args.reps / 2 <= done + ROUND:  # the sides idle: measure the rate again
            rate = max(rate, matmul_gflops(cpus, work))  # noise only lowers a rate
    finals = {name: worker.finish() for name, worker in live.items()}
    rate = max(rate, matmul_gflops(cpus, work))
    row: Dict[str, Any] = {"matmul_gflops": rate}
    for name in live:
        series = {kind: [sample[kind] for sample in samples[name]] for kind in samples[name][0]}
        row[name] = {
            "backend": started_with[name]["backend"],
            "facts": started_with[name].get("facts", {}),
            "cold": {phase: round(statistics.median(run[phase] for run in colds[name]), 1)
                     for phase in colds[name][0]},
            "forward": summarise(series.pop("forward")),
            "handler": {kind: summarise(values) for kind, values in series.items()},
            # Each iteration's request over the bare forward that follows it, then the median:
            # the two run a few ms apart, so a slow moment of the machine cancels out.
            "handler_over_forward": {
                kind: round(statistics.median(sample[kind] / sample["forward"]
                                              for sample in samples[name]), 3)
                for kind in series},
            "peak_rss_mb": finals[name]["peak_rss_mb"],
        }
        if "png_heatmap" in series:  # what a heatmap adds, per iteration (a few ms apart)
            row[name]["heatmap_over_png_ms"] = round(statistics.median(
                sample["png_heatmap"] - sample["png"] for sample in samples[name]), 2)
    for name in live:
        if name != "ours":  # the same weights and input: the same answers
            row[f"max_abs_output_difference_{name}"] = max(
                abs(a - b) for a, b in zip(finals["ours"]["outputs"], finals[name]["outputs"]))
    return row


def ratios(row: Dict[str, Any]) -> Dict[str, float]:
    """The issue's targets, from one CPU count's figures."""
    ours, naive = row["ours"], row["naive"]
    floor = ours["cold"]["import_ms"] + ours["cold"]["load_ms"]
    found = {
        "forward_speedup_vs_naive": round(naive["forward"]["p50"] / ours["forward"]["p50"], 2),
        "png_request_speedup_vs_naive": round(
            naive["handler"]["png"]["p50"] / ours["handler"]["png"]["p50"], 2),
        "cold_start_vs_naive": round(_cold_total(ours) / _cold_total(naive), 2),
        "first_answer_over_import_and_load": round(_cold_total(ours) / floor, 2),
        "forward_over_floor": round(ours["forward"]["p50"] / row["floor_ms"], 2),
        "naive_forward_over_floor": round(naive["forward"]["p50"] / row["floor_ms"], 2),
        **{f"{kind}_request_over_forward": value
           for kind, value in ours["handler_over_forward"].items()},
    }
    before = row.get("before")
    if before:  # the same request, the commit before against this one
        for kind, times in ours["handler"].items():
            if kind in before["handler"]:
                found[f"{kind}_speedup_vs_before"] = round(
                    before["handler"][kind]["p50"] / times["p50"], 2)
    return found


# Public Lambda prices (us-east-1): per GB-second of duration, by lambda_architecture, and per
# request (the same for both).
PRICE_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
PRICE_REQUEST = 0.20 / 1_000_000
MEMORY_MB = {1: 1769, 2: 3538}  # Lambda gives one vCPU per 1,769 MB
# arm64 is priced at the durations measured here: no arm64 CPU runs this benchmark
ARM64_NOTE = "arm64 priced at this machine's durations: arm64 speed is not measured here"


def cost_per_1000(memory_mb: int, milliseconds: float, architecture: str = "x86_64") -> float:
    """Lambda's bill for 1,000 requests of this duration (rounded up to the millisecond)."""
    billed = math.ceil(milliseconds) / 1000
    return 1000 * (billed * memory_mb / 1024 * PRICE_GB_SECOND[architecture] + PRICE_REQUEST)


def run(args):
    work = args.out / "warm-work"
    prepare(work, args.before)
    chosen = sides(work, args.before)
    gflop = densenet_gflop()
    report = {"densenet121_gflop": round(gflop, 2), "reps": args.reps,
              "cold_runs": args.cold_runs, "before": args.before,
              "sides": [side.name for side in chosen], "by_cpus": {}}
    for cpus in [count for count in CPU_COUNTS if count <= len(os.sched_getaffinity(0))]:
        row = measure(cpus, work, args, chosen)
        row["floor_ms"] = round(gflop / row["matmul_gflops"] * 1000, 1)
        row["ratios"] = ratios(row)
        png_ms = row["ours"]["handler"]["png"]["p50"]
        row["lambda"] = {"memory_mb": MEMORY_MB[cpus], "png_request_ms": png_ms,
                         "usd_per_1000_images": round(cost_per_1000(MEMORY_MB[cpus], png_ms), 5),
                         "usd_per_1000_images_arm64": round(
                             cost_per_1000(MEMORY_MB[cpus], png_ms, "arm64"), 5),
                         "arm64_note": ARM64_NOTE}
        report["by_cpus"][cpus] = row
    text = table(report)
    plot(report, args.out / "warm.png")
    return report, text


def _cold_total(side: dict) -> float:
    cold = side["cold"]
    return cold["import_ms"] + cold["load_ms"] + cold["first_inference_ms"]


# the table's column heading of each request (warm_worker.REQUESTS)
HEADINGS = {"png": "PNG", "jpeg": "JPEG", "dicom_jpeg": "DCM JPEG", "j2k_lossy": "J2K lossy",
            "j2k_lossless": "J2K lossl", "png_heatmap": "PNG+heat"}


def table(report: dict) -> str:
    lines = [f"DenseNet-121 at 224x224: {report['densenet121_gflop']} GFLOP per image; "
             f"{report['reps']} warm iterations per side, cold start = median of "
             f"{report['cold_runs']} fresh processes"
             + (f"; before = {report['before']}" if report.get("before") else ""), "",
             "p50 ms per request (the Lambda handler), the bare forward, the cold start:"]
    lines.append(f"{'cpus':>4} {'side':<7} {'fwd':>6} "
                 + " ".join(f"{heading:>9}" for heading in HEADINGS.values())
                 + f" {'PNG p95':>8} {'cold ms':>8} {'(import/load/first/heatmap)':>28}"
                 f" {'RSS MB':>7}")
    for cpus, row in report["by_cpus"].items():
        for name in report["sides"]:
            side = row[name]
            handler, cold = side["handler"], side["cold"]
            cells = " ".join(f"{handler[kind]['p50']:>9.1f}" if kind in handler else f"{'-':>9}"
                             for kind in HEADINGS)
            phases = "/".join(f"{cold[phase]:.0f}" for phase in (
                "import_ms", "load_ms", "first_inference_ms", "first_heatmap_ms") if phase in cold)
            lines.append(f"{cpus:>4} {name:<7} {side['forward']['p50']:>6.1f} {cells} "
                         f"{handler['png']['p95']:>8.1f} {_cold_total(side):>8.0f} "
                         f"{phases:>28} {side['peak_rss_mb']:>7.0f}")
    lines.append("")
    for cpus, row in report["by_cpus"].items():
        r, ours = row["ratios"], row["ours"]
        over = ", ".join(f"{HEADINGS[kind]} {value:.3f}"
                         for kind, value in ours["handler_over_forward"].items())
        lines += [
            f"{cpus} CPU(s): forward {r['forward_speedup_vs_naive']:.2f}x faster than naive "
            f"(PNG request {r['png_request_speedup_vs_naive']:.2f}x), max |p_ours - p_naive| "
            f"{row['max_abs_output_difference_naive']:.1e}; floor {row['floor_ms']:.0f} ms at "
            f"{row['matmul_gflops']:.0f} GFLOP/s (ours {r['forward_over_floor']:.2f}x, naive "
            f"{r['naive_forward_over_floor']:.2f}x)",
            f"    request / bare forward (median of per-iteration ratios): {over}",
            f"    heatmap over the plain PNG request: {ours.get('heatmap_over_png_ms', 0):.1f} ms"
            f" (median of per-iteration differences); the first heatmap of a fresh process "
            f"{ours['cold'].get('first_heatmap_ms', 0):.0f} ms, torch imported: "
            f"{ours['facts'].get('torch_imported_by_first_heatmap')}",
            f"    cold start {r['cold_start_vs_naive']:.2f}x naive's; first answer / (import + "
            f"load) {r['first_answer_over_import_and_load']:.2f}",
        ]
        for name in report["sides"]:
            if name in ("ours", "naive"):
                continue
            other = row[name]
            if name == "before":
                faster = ", ".join(f"{HEADINGS[kind]} {r[f'{kind}_speedup_vs_{name}']:.2f}x"
                                   for kind in HEADINGS if f"{kind}_speedup_vs_{name}" in r)
                lines.append(f"    ours against {name}: request speed-up {faster}; max "
                             f"|p_ours - p_{name}| (the same input) "
                             f"{row[f'max_abs_output_difference_{name}']:.1e}")
            lines += [
                f"    {name}: request / forward "
                + ", ".join(f"{HEADINGS[kind]} {value:.3f}"
                            for kind, value in other["handler_over_forward"].items())
                + f"; heatmap over PNG {other.get('heatmap_over_png_ms', 0):.1f} ms, first "
                f"heatmap {other['cold'].get('first_heatmap_ms', 0):.0f} ms (torch imported: "
                f"{other['facts'].get('torch_imported_by_first_heatmap')})",
            ]
    lines += ["", "Lambda per 1,000 images at x86_64 and arm64 prices (this machine's CPUs, not "
              f"Lambda's; {ARM64_NOTE}):"]
    for cpus, row in report["by_cpus"].items():
        cost = row["lambda"]
        lines.append(f"    {cost['memory_mb']:>6,} MB = {cpus} vCPU: PNG request "
                     f"{cost['png_request_ms']:.1f} ms, x86_64 "
                     f"${cost['usd_per_1000_images']:.4f}, arm64 "
                     f"${cost['usd_per_1000_images_arm64']:.4f}")
    return "\n".join(lines)


# bar colours per side
COLOURS = {"ours": (70, 110, 200), "reduced": (90, 170, 220), "naive": (200, 110, 70),
           "before": (150, 150, 150)}


def plot(report: dict, path: Path) -> None:
    """A bar chart of warm latencies per request and cold starts, per side and CPU count (Pillow
    only: no plotting dependency)."""
    from PIL import Image, ImageDraw
    bars = []
    for cpus, row in report["by_cpus"].items():
        for kind in ("forward", *HEADINGS, "cold start"):
            for name in report["sides"]:
                side = row[name]
                if kind == "forward":
                    value = side["forward"]["p50"]
                elif kind == "cold start":
                    value = _cold_total(side)
                elif kind in side["handler"]:
                    value = side["handler"][kind]["p50"]
                else:
                    continue
                bars.append((name, f"{name} {cpus} cpu {HEADINGS.get(kind, kind)}", value))
    width, row_height, left = 1000, 22, 260
    image = Image.new("RGB", (width, row_height * (len(bars) + 2)), "white")
    draw = ImageDraw.Draw(image)
    longest = max(value for _, _, value in bars)
    scale = (width - left - 90) / math.log10(longest + 1)
    draw.text((10, 6), "milliseconds, median (log scale; lower is better)", fill="black")
    for index, (name, label, value) in enumerate(bars, 1):
        top = index * row_height + 6
        draw.text((10, top + 3), label, fill="black")
        end = left + math.log10(value + 1) * scale
        draw.rectangle([left, top, end, top + row_height - 6],
                       fill=COLOURS.get(name, (90, 160, 90)))
        draw.text((end + 6, top + 3), f"{value:.0f}", fill="black")
    image.save(path)
