"""`python -m benchmarks decode-memory`: the peak memory of decode() on a 30 MB uncompressed
16-bit DICOM (the RG1 chest tiled to 3,900 x 3,900) and on the RG1 chest stored JPEG 2000, in
multiples of the image's pixel bytes (rows x columns x 2), measured two ways in a fresh process
that already holds the file's bytes and has decoded a tiny JPEG 2000 DICOM (imports, codecs):

- tracemalloc's peak over decode(): every Python object and numpy array allocated meanwhile
  (pydicom's copy of Pixel Data, the samples, the float32 result), but not what C libraries
  allocate with malloc (Pillow's image, OpenJPEG's buffers): complete for uncompressed DICOM,
  an undercount for JPEG 2000.
- the peak resident set (Linux VmHWM, reset just before through /proc/self/clear_refs) less the
  resident set before, on the first decode of the file: everything touched, C libraries
  included, in whole pages (memory the allocator already held is not counted twice).

The result array itself (4 bytes a pixel) is part of both peaks. --decode-memory-tree measures
another checkout's decoder the same way (e.g. main's, exported with git archive), for a before
and after.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "cxr"
TARGET = 4.0  # the bound, in pixel bytes

CHILD = r"""
import json, os, sys, tracemalloc
tree, path, warm = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, tree)
os.chdir(tree)
from chalicelib.imaging.dispatch import decode
from chalicelib.imaging.image import Limits
limits = Limits(40_000_000, 1)
body = open(path, "rb").read()
decode(open(warm, "rb").read(), "application/dicom", limits)  # imports, codecs: a tiny file


def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024


with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
rss = status("VmRSS")
image = decode(body, "application/dicom", limits)
rss_peak = status("VmHWM") - rss
del image
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
image = decode(body, "application/dicom", limits)
traced = tracemalloc.get_traced_memory()[1] - before
print(json.dumps({"tracemalloc_peak": traced, "rss_peak_increase": rss_peak,
                  "shape": list(image.pixels.shape)}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decode-memory")
    group.add_argument("--decode-memory-tree", type=Path, default=REPO,
                       help="the checkout whose decoder is measured (%(default)s)")


def measure(tree: Path, body: bytes, warm: bytes) -> Dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".dcm") as file, \
            tempfile.NamedTemporaryFile(suffix=".dcm") as warm_file:
        file.write(body)
        file.flush()
        warm_file.write(warm)
        warm_file.flush()
        done = subprocess.run([sys.executable, "-c", CHILD, str(tree), file.name,
                               warm_file.name],
                              capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> Tuple[Dict[str, Any], str]:
    from benchmarks.samples import RG1_J2K_NAME, png_j2k_dicom, rg1_j2k_lossless, tiled_rg1_dicom
    warm = png_j2k_dicom(FIXTURES / "nih1000_64px_00000165_005_rgb.png")  # 64x64
    files = {"uncompressed 16-bit 3900x3900": tiled_rg1_dicom(FIXTURES),
             "rg1 j2k lossless 1841x1955": rg1_j2k_lossless(FIXTURES),
             "rg1 j2k lossy (shared)": (FIXTURES / RG1_J2K_NAME).read_bytes()}
    rows: List[Dict[str, Any]] = []
    for name, body in files.items():
        figures = measure(args.decode_memory_tree, body, warm)
        height, width = figures["shape"]
        pixel_bytes = height * width * 2
        rows.append({"file": name, "file_bytes": len(body), "pixel_bytes": pixel_bytes,
                     **figures,
                     "tracemalloc_x": figures["tracemalloc_peak"] / pixel_bytes,
                     "rss_x": figures["rss_peak_increase"] / pixel_bytes})
    report = {"tree": str(args.decode_memory_tree), "target_x": TARGET, "files": rows,
              "problems": [f"{row['file']}: {row['tracemalloc_x']:.2f}x its pixel bytes"
                           for row in rows[:1] if row["tracemalloc_x"] >= TARGET]}
    lines = [f"decode() peak memory in multiples of the pixel bytes (target < {TARGET:g}x for "
             f"the 30 MB DICOM), decoder of {args.decode_memory_tree}",
             f"{'file':32s} {'file MB':>8s} {'pixel MB':>8s} {'tracemalloc':>11s} "
             f"{'x':>5s} {'RSS peak':>9s} {'x':>5s}"]
    for row in rows:
        lines.append(f"{row['file']:32s} {row['file_bytes'] / 1e6:8.1f} "
                     f"{row['pixel_bytes'] / 1e6:8.1f} {row['tracemalloc_peak'] / 1e6:9.1f}MB "
                     f"{row['tracemalloc_x']:5.2f} {row['rss_peak_increase'] / 1e6:7.1f}MB "
                     f"{row['rss_x']:5.2f}")
    return report, "\n".join(lines)
