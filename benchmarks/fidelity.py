"""`python -m benchmarks fidelity`: what reduced decoding (XRAY_REDUCED_DECODING, opt-in) costs
in fidelity and gives in speed, per file and level: the model input made from a coarser JPEG 2000
resolution level or JPEG DCT scale against the one made from every pixel (mean and max |diff| in
% of the [-1024, 1024] range, inside a border where zero padding makes any two resamplers
differ), the demo model's largest probability change, and the decode time of both.

Every level the file holds is measured down to 1/8 of each side, also those the service would
not decode by default (short side below twice the model's input side: marked "no"). For scale,
the last table compares two resamplers on the full image: PIL's bilinear resize against the
skimage-style one the xrv recipe uses.

The inputs: every shared fixture whose format has levels (the RG1 chest, JPEG 2000 lossy; the
JPEG Baseline DICOM), JPEGs of the fixture PNGs and of the RG1 chest at full size, JPEG 2000
versions (lossless, and lossy at 20:1) of the fixture PNGs, and the RG1 chest stored JPEG 2000
lossless. The demo model is untrained: its probability changes say how far the input moved for
one DenseNet-121, not what a trained model's findings would do.
"""
import argparse
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from chalicelib.inference.store import REDUCED_MIN_SIDE_FACTOR

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "cxr"
MODEL = REPO / "efs-local" / "models" / "current"
SIDE = 224
RANGE = 2048.0  # the xrv recipe's [-1024, 1024]
# Output pixels left out at each edge: skimage's zero-padded blur darkens the edge by an amount
# that depends on the blur's width, hence on the level; 4 covers its reach at every level here.
BORDER = 4
MAX_LEVEL = 3
SERVED_SIDE = REDUCED_MIN_SIDE_FACTOR * SIDE  # the default floor (manifest min_side)
DICOM, JPEG = "application/dicom", "image/jpeg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fidelity")
    group.add_argument("--fidelity-files", nargs="*", default=None, metavar="NAME",
                       help="only the inputs whose name contains one of these (default: all)")
    group.add_argument("--fidelity-reps", type=int, default=5,
                       help="decodes timed per file and level, the fastest kept (%(default)s)")


def inputs() -> Dict[str, Tuple[Callable[[], bytes], str]]:
    """name -> (how to make the bytes, content type)."""
    from benchmarks.samples import RG1_J2K_NAME, jpeg_of, png_j2k_dicom, rg1_j2k_lossless, rg1_jpeg
    pngs = {"cardiomegaly": FIXTURES / "nih_00000001_000_cardiomegaly.png",
            "nofinding": FIXTURES / "nih_00027426_000_nofinding.png"}
    made: Dict[str, Tuple[Callable[[], bytes], str]] = {
        "rg1 j2k lossy (shared)": ((FIXTURES / RG1_J2K_NAME).read_bytes, DICOM),
        "rg1 j2k lossless": (lambda: rg1_j2k_lossless(FIXTURES), DICOM),
        "nih jpeg baseline dicom (shared)": (
            (FIXTURES / "nih_00000001_000_wrapped_jpegbaseline_8bit_mono1_derived.dcm")
            .read_bytes, DICOM),
        "rg1 jpeg q95": (lambda: rg1_jpeg(FIXTURES), JPEG),
    }
    for name, path in pngs.items():
        made[f"{name} jpeg q95"] = (lambda path=path: jpeg_of(path), JPEG)
        made[f"{name} j2k lossless"] = (lambda path=path: png_j2k_dicom(path), DICOM)
        made[f"{name} j2k 20:1"] = (lambda path=path: png_j2k_dicom(path, rate=20), DICOM)
    return made


def _fastest(work: Callable[[], Any], reps: int) -> Tuple[Any, float]:
    best, result = float("inf"), None
    for _ in range(max(1, reps)):
        started = time.perf_counter()
        result = work()
        best = min(best, (time.perf_counter() - started) * 1000)
    return result, best


def _inside(batch: Any) -> Any:
    return batch[0, 0, BORDER:SIDE - BORDER, BORDER:SIDE - BORDER]


def measure(name: str, body: bytes, content_type: str, classifier: Any, reps: int
            ) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """(a row per level, the resampler comparison) for one file."""
    import numpy as np
    from PIL import Image

    from chalicelib.imaging.dispatch import decode
    from chalicelib.imaging.image import Limits, Resolution
    from chalicelib.inference.preprocessing import XRV_RANGE, center_crop, xrv

    limits = Limits(40_000_000, 1)
    exact, exact_ms = _fastest(lambda: decode(body, content_type, limits), reps)
    reference = xrv(exact.pixels, SIDE)
    reference_p = np.asarray(classifier.inference(reference))
    rows = []
    for level in range(1, MAX_LEVEL + 1):
        # this level even where the service would not decode it (marked "served": no)
        anyway = Resolution(coarsest_level=level, min_side=1)
        reduced, reduced_ms = _fastest(lambda: decode(body, content_type, limits, anyway), reps)
        if reduced.level != level:
            break  # the file holds no finer level than this one (or none at all)
        batch = xrv(reduced.pixels, SIDE, reduced.grid)  # as the service preprocesses it
        difference = np.abs(_inside(batch) - _inside(reference)) / RANGE * 100
        unaligned = np.abs(_inside(xrv(reduced.pixels, SIDE)) - _inside(reference)) / RANGE * 100
        probabilities = np.asarray(classifier.inference(batch))
        height, width = reduced.pixels.shape
        rows.append({
            "file": name, "level": level, "decoded": [width, height],
            "served": min(width, height) >= SERVED_SIDE,
            "input_mean_pct": float(difference.mean()), "input_max_pct": float(difference.max()),
            "max_probability_diff": float(np.abs(probabilities - reference_p).max()),
            "unaligned_mean_pct": float(unaligned.mean()),
            "unaligned_max_pct": float(unaligned.max()),
            "exact_ms": exact_ms, "reduced_ms": reduced_ms,
        })
    square = np.ascontiguousarray(center_crop(exact.pixels))
    bilinear = np.asarray(Image.fromarray(square, mode="F").resize(
        (SIDE, SIDE), Image.Resampling.BILINEAR)) * np.float32(2 * XRV_RANGE) - XRV_RANGE
    scale = np.abs(bilinear[BORDER:SIDE - BORDER, BORDER:SIDE - BORDER]
                   - _inside(reference)) / RANGE * 100
    bilinear_p = np.asarray(classifier.inference(bilinear[None, None].astype(np.float32)))
    height, width = exact.pixels.shape
    resampler = {"file": name, "size": [width, height], "mean_pct": float(scale.mean()),
                 "max_pct": float(scale.max()),
                 "max_probability_diff": float(np.abs(bilinear_p - reference_p).max())}
    return rows, resampler


def run(args: argparse.Namespace) -> Tuple[Dict[str, Any], str]:
    from chalicelib.inference.classifier import load_classifier

    if not MODEL.exists():
        raise SystemExit(f"fidelity: no model at {MODEL}: run scripts/setup first")
    classifier = load_classifier(MODEL, None)
    wanted = args.fidelity_files
    rows: List[Dict[str, Any]] = []
    resamplers: List[Dict[str, Any]] = []
    for name, (make, content_type) in inputs().items():
        if wanted and not any(part in name for part in wanted):
            continue
        levels, resampler = measure(name, make(), content_type, classifier,
                                    args.fidelity_reps)
        rows += levels
        resamplers.append(resampler)
    report = {"side": SIDE, "served_side": SERVED_SIDE, "border_px": BORDER, "levels": rows,
              "resamplers": resamplers, "model": classifier.identity()}
    return report, table(report)


def table(report: Dict[str, Any]) -> str:
    lines = [f"Reduced decoding against every pixel: model input |diff| in % of [-1024, 1024] "
             f"inside a {report['border_px']}-pixel border of the {report['side']}x"
             f"{report['side']} input; the demo model's max |probability diff|; decode ms "
             f"(fastest), exact and reduced. served: the service decodes this level (short side "
             f">= {report['served_side']}, the manifest's default min_side) when its "
             f"coarsest_level allows it. unaligned: the level resized as "
             f"if it were a full image (what aligning the output grid saves).",
             f"{'file':34s} {'lvl':>3s} {'decoded':>9s} {'served':>6s} {'mean %':>7s} "
             f"{'max %':>7s} {'max dp':>8s} {'exact':>7s} {'reduced':>7s} {'x':>5s} "
             f"{'unaligned mean / max %':>22s}"]
    for row in report["levels"]:
        width, height = row["decoded"]
        lines.append(
            f"{row['file']:34s} {row['level']:3d} {f'{width}x{height}':>9s} "
            f"{'yes' if row['served'] else 'no':>6s} {row['input_mean_pct']:7.3f} "
            f"{row['input_max_pct']:7.3f} {row['max_probability_diff']:8.2e} "
            f"{row['exact_ms']:7.1f} {row['reduced_ms']:7.1f} "
            f"{row['exact_ms'] / max(row['reduced_ms'], 1e-6):5.1f} "
            f"{row['unaligned_mean_pct']:9.3f} / {row['unaligned_max_pct']:7.3f}")
    lines += ["", "For scale, on the full image: PIL's bilinear resize against the xrv recipe's "
                  "skimage-style resize (same border)",
              f"{'file':34s} {'size':>9s} {'mean %':>7s} {'max %':>7s} {'max dp':>8s}"]
    for row in report["resamplers"]:
        width, height = row["size"]
        lines.append(f"{row['file']:34s} {f'{width}x{height}':>9s} {row['mean_pct']:7.3f} "
                     f"{row['max_pct']:7.3f} {row['max_probability_diff']:8.2e}")
    return "\n".join(lines)
