"""Builds small DICOM Part 10 files in memory for the decoder tests."""
import io
from typing import Optional

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def make_dicom(pixels: Optional[np.ndarray], photometric: str = "MONOCHROME2",
               bits_stored: Optional[int] = None, signed: bool = False,
               transfer_syntax: str = ExplicitVRLittleEndian, **attributes) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientName = "Test^Patient"
    if pixels is not None:
        allocated = pixels.dtype.itemsize * 8
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
        if pixels.ndim == 3:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = allocated
        ds.BitsStored = bits_stored or allocated
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for key, value in attributes.items():
        setattr(ds, key, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def decompressed(path) -> bytes:
    """The DICOM file at `path` with its pixel data decoded and stored uncompressed (Explicit VR
    Little Endian), header kept: the shared RG1 JPEG 2000 chest becomes a file over what the
    synchronous route takes. The benchmarks' recipe (benchmarks/samples.py), so both agree."""
    from benchmarks.samples import uncompressed_dicom_of
    return uncompressed_dicom_of(path)
