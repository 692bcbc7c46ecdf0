"""The media types POST /xray accepts and how a body's real format is recognised.
Kept free of numpy and Pillow: app.py imports it at deploy time."""
from typing import Optional

PNG, JPEG, DICOM = "png", "jpeg", "dicom"

FORMAT_OF_CONTENT_TYPE = {
    "image/png": PNG,
    "image/jpeg": JPEG,
    "image/jpg": JPEG,  # not registered, but common (and what the seed article's curl sends)
    "application/dicom": DICOM,
    "application/octet-stream": None,  # the format is sniffed from the bytes
}
# Chalice matches route content types by exact string (no wildcards), so list each one.
CONTENT_TYPES = list(FORMAT_OF_CONTENT_TYPE)
CONTENT_TYPE_OF_FORMAT = {PNG: "image/png", JPEG: "image/jpeg", DICOM: "application/dicom"}
# Common mistakes, routed to the view only to be refused with advice instead of Chalice's bare
# "Unsupported media type". Never binary types: their bodies are not read.
MISTAKEN_CONTENT_TYPES = {
    "application/x-www-form-urlencoded":
        "curl sends Content-Type application/x-www-form-urlencoded unless told otherwise: add "
        "-H 'Content-Type: image/png' (or image/jpeg, application/dicom, "
        "application/octet-stream).",
    "multipart/form-data":
        "Send the file's raw bytes as the request body (fetch(url, {method: 'POST', body: file})"
        " or curl --data-binary @file), not a multipart form.",
}
ROUTE_CONTENT_TYPES = CONTENT_TYPES + list(MISTAKEN_CONTENT_TYPES)


def media_type(content_type: str) -> str:
    """"image/png; charset=binary" -> "image/png"."""
    return content_type.split(";", 1)[0].strip().lower()


def sniff(body: bytes) -> Optional[str]:
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if body.startswith(b"\xff\xd8\xff"):
        return JPEG
    if body[128:132] == b"DICM":
        return DICOM
    return None
