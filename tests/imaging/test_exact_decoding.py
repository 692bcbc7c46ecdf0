"""Exact decoding made faster (issue 16) gives the same pixels, bit for bit: every shared DICOM,
the RG1 chest stored JPEG 2000 lossless, and made files for each path the decoder takes
(native 8/16-bit, signed, rescaled, windowed, VOI LUT, JPEG 2000 of 8 and 12 bits, big endian),
against the pipeline as it was (tests/support/dicom_reference.py). And OpenJPEG decodes on the
function's vCPUs unless the operator says otherwise."""
import gc
import io
import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from benchmarks.samples import dicom_of_pixels, j2k_dicom_of, rg1_j2k_lossless
from chalicelib.imaging import codestreams
from chalicelib.imaging.dispatch import decode
from chalicelib.imaging.image import Limits
from chalicelib.inference.backends import cpu_threads
from chalicelib.settings import OPJ_NUM_THREADS
from tests.support.dicom_factory import make_dicom
from tests.support.dicom_reference import reference_pixels
from tests.support.fixtures import ALL_FIXTURES, DCM_J2K, FIXTURES, fixture_id

LIMITS = Limits(max_pixels=40_000_000, min_side=32)
DICOMS = [path for path in ALL_FIXTURES if path.suffix == ".dcm"]


@pytest.fixture(scope="module")
def j2k_lossless() -> bytes:
    return rg1_j2k_lossless(FIXTURES)


def assert_bit_identical(body: bytes) -> None:
    ours = decode(body, "application/dicom", LIMITS).pixels
    reference = reference_pixels(body)
    assert ours.dtype == reference.dtype == np.float32 and ours.flags.c_contiguous
    assert ours.shape == reference.shape
    assert ours.tobytes() == reference.tobytes()


@pytest.mark.parametrize("path", DICOMS, ids=fixture_id)
def test_given_a_shared_dicom_when_decoded_then_the_pixels_are_the_old_pipelines_bit_for_bit(
        path):
    assert_bit_identical(path.read_bytes())


def test_given_the_rg1_chest_stored_jpeg_2000_lossless_then_the_pixels_are_bit_identical(
        j2k_lossless):
    assert_bit_identical(j2k_lossless)


def ramp(bits: int, dtype=np.uint16, side: int = 96) -> np.ndarray:
    return (np.arange(side * side, dtype=np.int64).reshape(side, side) * 37 % (1 << bits)
            ).astype(dtype)


def rle(body: bytes) -> bytes:
    dataset = pydicom.dcmread(io.BytesIO(body))
    dataset.compress(RLELossless)
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


MADE = {
    "native 8-bit": lambda: make_dicom(ramp(8, np.uint8)),
    "native 12 of 16 bits, junk above": lambda: make_dicom(ramp(16), bits_stored=12),
    "native signed 12-bit, rescaled and windowed": lambda: make_dicom(
        ramp(12).astype(np.int16) - 2048, bits_stored=12, signed=True, RescaleSlope=2,
        RescaleIntercept=100, WindowCenter=300, WindowWidth=2000),
    "native signed 16-bit, junk-free": lambda: make_dicom(
        ramp(16).view(np.int16), signed=True),
    "native, sigmoid window, MONOCHROME1": lambda: make_dicom(
        ramp(12), "MONOCHROME1", bits_stored=12, WindowCenter=2048, WindowWidth=1000,
        VOILUTFunction="SIGMOID"),
    "native, linear exact window": lambda: make_dicom(
        ramp(12), bits_stored=12, WindowCenter=1000.5, WindowWidth=700.25,
        VOILUTFunction="LINEAR_EXACT"),
    "native, 1-wide window": lambda: make_dicom(ramp(12), bits_stored=12, WindowCenter=2000,
                                                WindowWidth=1),
    "RLE lossless (pydicom reads it)": lambda: rle(make_dicom(ramp(12), bits_stored=12)),
    "JPEG 2000 lossless, 8-bit": lambda: j2k_dicom_of(dicom_of_pixels(ramp(8, np.uint8))),
    "JPEG 2000 lossy, 8-bit MONOCHROME1": lambda: j2k_dicom_of(
        dicom_of_pixels(ramp(8, np.uint8), "MONOCHROME1"), rate=10),
    "JPEG 2000 lossless, 12 of 16 bits": lambda: j2k_dicom_of(
        make_dicom(ramp(12), bits_stored=12, WindowCenter=2048, WindowWidth=3000)),
}


@pytest.mark.parametrize("name", list(MADE))
def test_given_each_path_of_the_decoder_then_the_pixels_are_the_old_pipelines_bit_for_bit(name):
    assert_bit_identical(MADE[name]())


def lut(entries: int, first: int, bits: int, data: list):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    item = Dataset()
    item.LUTDescriptor = [entries, first, bits]
    item.add_new(0x00283006, "US", data)  # LUT Data
    return Sequence([item])


def test_given_modality_and_voi_lut_sequences_then_the_pixels_are_bit_identical():
    modality = lut(4096, 0, 16, [(v * 7) % 65536 for v in range(4096)])
    voi = lut(1024, 1000, 8, [255 - v % 256 for v in range(1024)])
    body = make_dicom(ramp(12), bits_stored=12, ModalityLUTSequence=modality,
                      VOILUTSequence=voi)
    assert_bit_identical(body)
    assert decode(body, "application/dicom", LIMITS).details["windowed"] is True


def test_given_no_operator_setting_when_a_jpeg_2000_is_decoded_then_openjpeg_gets_every_vcpu(
        monkeypatch):
    monkeypatch.delenv(OPJ_NUM_THREADS, raising=False)
    decode(DCM_J2K.read_bytes(), "application/dicom", LIMITS)
    assert os.environ[OPJ_NUM_THREADS] == str(cpu_threads())


def test_given_the_operators_opj_num_threads_then_it_is_kept(monkeypatch):
    monkeypatch.setenv(OPJ_NUM_THREADS, "1")
    decode(DCM_J2K.read_bytes(), "application/dicom", LIMITS)
    assert os.environ[OPJ_NUM_THREADS] == "1"


WATCHER = """
import os, select, sys
task, most = f"/proc/{sys.argv[1]}/task", 0
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    most = max(most, len(os.listdir(task)))
print(most)
"""


def most_threads_while(work) -> int:
    """The most threads this process ran at once while work() ran, as another process sees
    them in /proc (a thread of ours would wait for the GIL that the decoder holds)."""
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(os.getpid())],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert watcher.stdout is not None and watcher.stdout.readline() == "ready\n"
    try:
        work()
    finally:
        out, _ = watcher.communicate("done\n", timeout=60)
    return int(out)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_openjpeg_reads_opj_num_threads_at_each_decode_in_this_process(monkeypatch, j2k_lossless):
    """What the thread setting relies on: not read once at import, but per decoder."""
    def decode_with(threads: int) -> int:
        gc.collect()  # the last decodes' codecs, and their OpenJPEG thread pools, are gone
        monkeypatch.setenv(OPJ_NUM_THREADS, str(threads))
        def work() -> None:
            for _ in range(3):  # three windows for the watcher, on a busy machine
                decode(j2k_lossless, "application/dicom", LIMITS)
        return most_threads_while(work)
    one, four, one_again = decode_with(1), decode_with(4), decode_with(1)
    print(f"threads seen: {one} with 1, {four} with 4, {one_again} with 1 again")
    assert four >= one + 3 and one_again <= four - 3


def test_the_thread_default_is_set_only_where_unset(monkeypatch):
    monkeypatch.setenv(OPJ_NUM_THREADS, "3")
    codestreams.use_every_cpu_for_jpeg2000()
    assert os.environ[OPJ_NUM_THREADS] == "3"
