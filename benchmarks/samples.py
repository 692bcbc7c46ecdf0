"""The files every benchmark, the load test and the tests make from the shared radiographs, one
recipe each in one place: a JPEG of a PNG (the shared fixtures hold no plain JPEG), and a
full-size uncompressed DICOM (the shared RG1 chest is JPEG 2000, 0.7 MB; decoded and stored
uncompressed it is about 7 MB: over the synchronous route's limit, what the jobs path is for),
and the same chest stored JPEG 2000 lossless (a common PACS transfer syntax; the shared file is
lossy)."""
import io
from pathlib import Path
from typing import Any, Optional

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
    return j2k_dicom_of(path.read_bytes(), resolutions=resolutions)


def j2k_dicom_of(body: bytes, resolutions: int = 6, rate: Optional[float] = None) -> bytes:
    """The DICOM file `body` with its pixels stored JPEG 2000: lossless (5/3 wavelet), or lossy
    (9/7) at `rate`:1 compression; every other element as it was."""
    import pydicom
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000, JPEG2000Lossless
    dataset = pydicom.dcmread(io.BytesIO(body))
    pixels = dataset.pixel_array
    if pixels.ndim != 2 or pixels.dtype.kind != "u" or pixels.itemsize > 2:
        raise ValueError("only single-frame unsigned grayscale is recoded")
    if pixels.itemsize == 1:
        image = Image.fromarray(pixels, "L")
    else:
        image = Image.frombytes("I;16", (pixels.shape[1], pixels.shape[0]),
                                pixels.astype("<u2").tobytes())
    codestream = io.BytesIO()
    lossy = {} if rate is None else {"quality_mode": "rates", "quality_layers": [rate]}
    image.save(codestream, "JPEG2000", irreversible=rate is not None, no_jp2=True,
               num_resolutions=resolutions, **lossy)
    dataset.PixelData = encapsulate([codestream.getvalue()])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = JPEG2000Lossless if rate is None else JPEG2000
    if rate is not None:
        dataset.LossyImageCompression = "01"
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom_of_pixels(pixels: Any, photometric: str = "MONOCHROME2") -> bytes:
    """A minimal single-frame DX image holding `pixels` (uint8 or uint16, height x width)
    uncompressed (Explicit VR Little Endian)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.BodyPartExamined, dataset.ViewPosition = "DX", "CHEST", "PA"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated = dataset.BitsStored = pixels.dtype.itemsize * 8
    dataset.HighBit, dataset.PixelRepresentation = dataset.BitsStored - 1, 0
    dataset.PixelData = pixels.tobytes()
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def png_j2k_dicom(path: Path, rate: Optional[float] = None) -> bytes:
    """A fixture PNG's gray pixels in a DICOM, stored JPEG 2000 (lossless, or lossy at rate:1)."""
    import numpy as np
    from PIL import Image
    pixels = np.asarray(Image.open(path).convert("L"))
    return j2k_dicom_of(dicom_of_pixels(pixels), rate=rate)


def rg1_jpeg(fixtures: Path, quality: int = 95) -> bytes:
    """The shared RG1 chest as the decoder shows it (window applied, MONOCHROME1 inverted), as
    a full-size (1841x1955) 8-bit JPEG: a large JPEG upload."""
    import numpy as np
    from PIL import Image

    from chalicelib.imaging.dispatch import decode
    from chalicelib.imaging.image import Limits
    unit = decode((fixtures / RG1_J2K_NAME).read_bytes(), "application/dicom",
                  Limits(40_000_000, 1)).pixels
    out = io.BytesIO()
    Image.fromarray(np.round(unit * 255).astype(np.uint8), "L").save(out, "JPEG",
                                                                      quality=quality)
    return out.getvalue()


def rg1_j2k_lossless(fixtures: Path) -> bytes:
    """The shared RG1 chest (JPEG 2000 lossy), its decoded pixels stored JPEG 2000 lossless:
    about 3.7 MB, under the synchronous route's limit."""
    return j2k_lossless_dicom_of(fixtures / RG1_J2K_NAME)


def tiled_rg1_dicom(fixtures: Path, side: int = 3900) -> bytes:
    """The shared RG1 chest's pixels tiled to side x side, stored uncompressed 16-bit with the
    RG1's header (window, MONOCHROME1): about 30 MB at 3,900, a large detector's image."""
    import numpy as np
    import pydicom
    dataset = pydicom.dcmread(fixtures / RG1_J2K_NAME)
    dataset.decompress()
    pixels = dataset.pixel_array
    reps = (-(-side // pixels.shape[0]), -(-side // pixels.shape[1]))
    tiled = np.ascontiguousarray(np.tile(pixels, reps)[:side, :side])
    dataset.Rows, dataset.Columns = tiled.shape
    dataset.PixelData = tiled.astype("<u2").tobytes()
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()
