"""STOW-RS requests as a PACS or router sends them, built by hand here (not by the product's
multipart builder, which the tests check), and DICOM JSON answers read back."""
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

BOUNDARY = "DICOMwebBoundary.1.2.840"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
# our private block in an item of the answer (chalicelib/dicomweb/stow.py)
CREATOR, ANSWER, ERROR = "00090010", "00091001", "00091002"


def body_of(parts: Sequence[Union[bytes, Tuple[Optional[str], bytes]]],
            boundary: str = BOUNDARY) -> bytes:
    """A multipart/related body: a bytes part is an application/dicom part; a (content type,
    bytes) pair is a part of that type (None: no Content-Type header)."""
    chunks: List[bytes] = []
    for part in parts:
        kind, data = ("application/dicom", part) if isinstance(part, bytes) else part
        chunks.append(f"--{boundary}\r\n".encode())
        if kind is not None:
            chunks.append(f"Content-Type: {kind}\r\n".encode())
        chunks += [b"\r\n", data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def edited(path: Path, **attributes: Any) -> bytes:
    """A fixture's bytes with some header attributes set (None deletes one)."""
    import pydicom
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def uids_of(data: bytes) -> Tuple[str, str, str]:
    """(SOP Class, SOP Instance, Study Instance) UIDs of a DICOM instance."""
    import pydicom
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)


def items(module: Dict[str, Any], tag: str) -> List[Dict[str, Any]]:
    """The items of a sequence of a DICOM JSON object ([] when it is absent)."""
    return module.get(tag, {}).get("Value", [])


def value(item: Dict[str, Any], tag: str) -> Any:
    """The first value of an element of a DICOM JSON item (None when absent or empty)."""
    found = item.get(tag, {}).get("Value")
    return found[0] if found else None


def referenced(module: Dict[str, Any]) -> List[Dict[str, Any]]:
    """[{sop_class, sop_instance, answer}] of the Referenced SOP Sequence."""
    return [{"sop_class": value(item, "00081150"), "sop_instance": value(item, "00081155"),
             "creator": value(item, CREATOR), "answer": json.loads(value(item, ANSWER))}
            for item in items(module, "00081199")]


def failed(module: Dict[str, Any]) -> List[Dict[str, Any]]:
    """[{sop_class, sop_instance, reason, error}] of the Failed SOP Sequence."""
    return [{"sop_class": value(item, "00081150"), "sop_instance": value(item, "00081155"),
             "reason": value(item, "00081197"), "creator": value(item, CREATOR),
             "error": json.loads(value(item, ERROR))}
            for item in items(module, "00081198")]


def parts_of(body: bytes, content_type: str) -> List[Tuple[str, bytes]]:
    """(content type, bytes) of each part of a multipart answer, read by the standard library's
    email parser (not by the product's)."""
    from email.parser import BytesParser
    from email.policy import HTTP
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    assert message.get_content_type() == "multipart/related", content_type
    return [(part.get_content_type(), part.get_payload(decode=True))
            for part in message.iter_parts()]


def sr_of(dicom: bytes) -> bytes:
    """A small Comprehensive SR (highdicom) of a DICOM instance: in its study, with its patient,
    referencing it. The same instance always gives the same SR UIDs (as an upload job's SR
    does). For the tests that need an SR before chalicelib/reports/sr.py exists, and never its
    stand-in: it checks none of what ours must say."""
    import highdicom as hd
    import pydicom
    from pydicom.uid import generate_uid
    source = pydicom.dcmread(io.BytesIO(dicom), stop_before_pixels=True)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        if keyword not in source:
            setattr(source, keyword, "")   # Type 2 in the SR: empty when the image has none
    finding = hd.sr.TextContentItem(name=hd.sr.CodedConcept("121071", "DCM", "Finding"),
                                    value="test finding",
                                    relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    root = hd.sr.ContainerContentItem(
        name=hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report"))
    root.ContentSequence = [finding]
    seed = str(source.SOPInstanceUID)
    report = hd.sr.ComprehensiveSR(
        evidence=[source], content=root, series_number=99, instance_number=1,
        series_instance_uid=generate_uid(entropy_srcs=["series", seed]),
        sop_instance_uid=generate_uid(entropy_srcs=["instance", seed]), manufacturer="tests")
    out = io.BytesIO()
    report.save_as(out, enforce_file_format=True)
    return out.getvalue()
