"""Which files of a folder are images the API classifies, and what each one is declared as.

PNG and JPEG by their extension; DICOM by `.dcm` or, for a file without a known extension (an
archive's `IM000123` or a UID like `1.2.840.113619.2.55.3.1`), by the `DICM` magic at byte 128
of DICOM Part 10. Everything else is skipped (and counted), as are hidden files and folders and
the folder the results are written to. The server still checks the bytes: a `.png` that is not
one fails there with the decoder's code."""
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from chalicelib.imaging import formats
from chalicelib.imaging.formats import CONTENT_TYPE_OF_FORMAT

CONTENT_TYPE_OF_EXTENSION = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                             ".dcm": "application/dicom"}
DICOM = CONTENT_TYPE_OF_FORMAT[formats.DICOM]
SNIFF_BYTES = 132  # formats.sniff reads the DICM magic at byte 128
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ImageFile:
    path: Path
    relative: str           # to the folder, with forward slashes: how results.jsonl names it
    content_type: str
    size: int


def discover(folder: Path, exclude: Optional[Path] = None) -> Tuple[List[ImageFile], List[str]]:
    """(the images under folder, sorted by relative path; the relative paths of the files
    skipped). Folders whose name starts with a dot, and `exclude`, are not entered."""
    images: List[ImageFile] = []
    skipped: List[str] = []
    excluded = exclude.resolve() if exclude is not None else None
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (excluded is None or (here / d).resolve() != excluded))
        for name in sorted(files):
            path = here / name
            relative = path.relative_to(folder).as_posix()
            content_type = None if name.startswith(".") else content_type_of(path)
            if content_type is None or not path.is_file():
                skipped.append(relative)
                continue
            images.append(ImageFile(path, relative, content_type, path.stat().st_size))
    images.sort(key=lambda image: image.relative)
    return images, sorted(skipped)


def content_type_of(path: Path) -> Optional[str]:
    known = CONTENT_TYPE_OF_EXTENSION.get(path.suffix.lower())
    if known is not None:
        return known
    try:
        with open(path, "rb") as file:
            head = file.read(SNIFF_BYTES)
    except OSError:
        return None
    return DICOM if formats.sniff(head) == formats.DICOM else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
