"""The shared radiographs (../shared/fixtures/cxr, read in place: never copied into the repo)
and small helpers around them."""
from pathlib import Path

from benchmarks.samples import jpeg_of, large_dicom  # noqa: F401 (the tests' names)
from chalicelib.settings import PROJECT_ROOT

REPO = PROJECT_ROOT
FIXTURES = REPO.parent / "shared" / "fixtures" / "cxr"

PNG_CARDIOMEGALY = FIXTURES / "nih_00000001_000_cardiomegaly.png"
PNG_NOFINDING = FIXTURES / "nih_00027426_000_nofinding.png"
PNG_TINY_RGB = FIXTURES / "nih1000_64px_00000165_005_rgb.png"
DCM_MONO2 = FIXTURES / "nih_00000001_000_wrapped_uncompressed_8bit_mono2_derived.dcm"
DCM_JPEG_MONO1 = FIXTURES / "nih_00000001_000_wrapped_jpegbaseline_8bit_mono1_derived.dcm"
DCM_J2K = FIXTURES / "nema_RG1_chest_cr_pa_j2k_lossy_15bit_mono1.dcm"
DCM_QUARTER = FIXTURES / "nema_RG1_chest_cr_pa_uncompressed_15bit_mono1_quarter_derived.dcm"
ALL_FIXTURES = sorted(p for p in FIXTURES.iterdir() if p.suffix in (".png", ".dcm"))
CONTENT_TYPE = {".png": "image/png", ".dcm": "application/dicom", ".jpg": "image/jpeg"}


def fixture_id(path: Path) -> str:
    return path.stem[:40]


def dicom_over_the_sync_limit() -> bytes:
    """The shared RG1 JPEG 2000 chest, decoded and stored uncompressed: about 7 MB, too large for
    POST /xray, the jobs path's case."""
    return large_dicom(FIXTURES)
