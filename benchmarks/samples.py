"""The files every benchmark, the load test and the tests make from the shared radiographs, one
recipe each in one place: a JPEG of a PNG (the shared fixtures hold no plain JPEG), and a
full-size uncompressed DICOM (the shared RG1 chest is JPEG 2000, 0.7 MB; decoded and stored
uncompressed it is about 7 MB: over the synchronous route's limit, what the jobs path is for)."""
import io
from pathlib import Path
from typing import Any

# The NEMA WG04 RG1 chest CR (1955x1841, 15 of 16 bits, MONOCHROME1): see the fixtures'
# LICENSES.md
RG1_J2K_NAME = "nema_RG1_chest_cr_pa_j2k_lossy_15bit_mono1.dcm"


def jpeg_of(path: Path, quality: int = 95, **save_args: Any) -> bytes:
    """A JPEG made from a fixture PNG."""
    from PIL import Image
    out = io.BytesIO()
    Image.open(path).convert("L").save(out, "JPEG", quality=quality, **save_args)
    return out.getvalue()


def uncompressed_dicom_of(path: Path) -> bytes:
    """The DICOM file at `path` with its pixels decoded and stored uncompressed (Explicit VR
    Little Endian); every other element as it was."""
    import pydicom
    dataset = pydicom.dcmread(path)
    dataset.decompress()
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def large_dicom(fixtures: Path) -> bytes:
    """The shared RG1 chest, uncompressed: about 7 MB."""
    return uncompressed_dicom_of(fixtures / RG1_J2K_NAME)
