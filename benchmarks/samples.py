"""The files every benchmark, the load test and the tests make from the shared radiographs, one
recipe each in one place: a JPEG of a PNG (the shared fixtures hold no plain JPEG), and a
full-size uncompressed DICOM (the shared RG1 chest is JPEG 2000, 0.7 MB; decoded and stored
uncompressed it is about 7 MB: over the synchronous route's limit, what the jobs path is for),
and the same chest stored JPEG 2000 lossless (a common PACS transfer syntax; the shared file is
lossy)."""
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


def j2k_lossless_dicom_of(path: Path, resolutions: int = 6) -> bytes:
    """The DICOM file at `path` with its pixels decoded and stored JPEG 2000 lossless (reversible
    5/3 wavelet, `resolutions` resolution levels, i.e. resolutions - 1 decompositions, as
    OpenJPEG's encoder writes by default) through Pillow's OpenJPEG; every other element as it
    was. Grayscale, unsigned, 16 bits allocated at most."""
    import pydicom
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless
    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array
    if pixels.ndim != 2 or pixels.dtype.kind != "u" or pixels.itemsize > 2:
        raise ValueError(f"{path.name}: only single-frame unsigned grayscale is recoded")
    image = Image.frombytes("I;16", (pixels.shape[1], pixels.shape[0]),
                            pixels.astype("<u2").tobytes())
    codestream = io.BytesIO()
    image.save(codestream, "JPEG2000", irreversible=False, no_jp2=True,
               num_resolutions=resolutions)
    dataset.PixelData = encapsulate([codestream.getvalue()])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = JPEG2000Lossless
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def rg1_j2k_lossless(fixtures: Path) -> bytes:
    """The shared RG1 chest (JPEG 2000 lossy), its decoded pixels stored JPEG 2000 lossless:
    about 3.7 MB, under the synchronous route's limit."""
    return j2k_lossless_dicom_of(fixtures / RG1_J2K_NAME)
