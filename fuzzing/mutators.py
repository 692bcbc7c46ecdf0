"""Structure-aware mutations: each rewrites one thing a parser trusts (a chunk or segment length,
a declared size, a tag value, where the data ends), leaving the rest of the file valid so that
the parser gets far enough to trust it. Each is a pure function of (bytes, random.Random), so a
corpus recipe (seed name, mutation names, RNG seed) rebuilds the same input byte for byte.

The format-specific ones return their input unchanged when it is not of their format (a
polyglot or a spliced file may no longer be), so any stack of them is a valid recipe."""
import io
import random
import struct
import warnings
import zlib
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Tuple

from chalicelib.imaging.formats import DICOM, JPEG, PNG, sniff

Mutator = Callable[[bytes, random.Random], bytes]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Sizes parsers are known to mishandle: zero, one, just under the minimum side, around 2**15,
# 2**16 and 2**31, and what overflows 32 bits when multiplied by the other side or by 4.
EDGE_SIZES = (0, 1, 2, 31, 32, 33, 255, 256, 4095, 4096, 6324, 6325, 32767, 32768, 65535,
              65536, 2 ** 24, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1)
EDGE_LENGTHS = (0, 1, 2, 3, 4, 7, 8, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


def _edge(rng: random.Random, values: Tuple[int, ...], current: int = 0) -> int:
    """An edge value, or one near the current value."""
    if rng.random() < 0.7:
        return rng.choice(values)
    return max(0, current + rng.choice((-2, -1, 1, 2, current, -current // 2)))


# ---- PNG: chunks --------------------------------------------------------------------------

Chunk = List  # [type: bytes, data: bytes, crc: Optional[bytes]]: crc None = recomputed


def png_chunks(data: bytes) -> Optional[List[Chunk]]:
    if not data.startswith(PNG_SIGNATURE):
        return None
    chunks, at = [], 8
    while at + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        body = data[at + 8:at + 8 + length]
        chunks.append([kind, body, data[at + 8 + length:at + 12 + length]])
        at += 12 + length
    return chunks


def png_bytes(chunks: List[Chunk], lengths: Optional[Dict[int, int]] = None) -> bytes:
    """The chunks as a PNG; a chunk whose crc is None gets its correct CRC; lengths overrides
    the length field of chunk i (its data stays as it is)."""
    out = [PNG_SIGNATURE]
    for i, (kind, body, crc) in enumerate(chunks):
        length = (lengths or {}).get(i, len(body))
        if crc is None:
            crc = struct.pack(">I", zlib.crc32(kind + body))
        out.append(struct.pack(">I", length & 0xFFFFFFFF) + kind + body + crc)
    return b"".join(out)


def _png_mutation(change: Callable[[List[Chunk], random.Random], Optional[bytes]]) -> Mutator:
    def mutate(data: bytes, rng: random.Random) -> bytes:
        chunks = png_chunks(data)
        if not chunks:
            return data
        out = change(chunks, rng)
        return png_bytes(chunks) if out is None else out
    mutate.__doc__ = change.__doc__
    return mutate


def _index(chunks: List[Chunk], kind: bytes) -> Optional[int]:
    return next((i for i, c in enumerate(chunks) if c[0] == kind), None)


@_png_mutation
def png_chunk_length(chunks, rng):
    """A chunk's length field says something else than its data's length."""
    i = rng.randrange(len(chunks))
    return png_bytes(chunks, {i: _edge(rng, EDGE_LENGTHS, len(chunks[i][1]))})


@_png_mutation
def png_bad_crc(chunks, rng):
    """A wrong CRC on one chunk."""
    chunk = rng.choice(chunks)
    chunk[2] = bytes(rng.randrange(256) for _ in range(4))
    return None


@_png_mutation
def png_ihdr_size(chunks, rng):
    """IHDR declares other dimensions than the data holds (zero, huge, overflowing)."""
    i = _index(chunks, b"IHDR")
    if i is None or len(chunks[i][1]) < 8:
        return None
    width, height = struct.unpack_from(">II", chunks[i][1])
    if rng.random() < 0.5:
        width = _edge(rng, EDGE_SIZES, width)
    if rng.random() < 0.7:
        height = _edge(rng, EDGE_SIZES, height)
    chunks[i][1] = struct.pack(">II", width, height) + chunks[i][1][8:]
    chunks[i][2] = None
    return None


@_png_mutation
def png_ihdr_fields(chunks, rng):
    """IHDR's bit depth, colour type, compression, filter or interlace byte changed."""
    i = _index(chunks, b"IHDR")
    if i is None or len(chunks[i][1]) != 13:
        return None
    fields = bytearray(chunks[i][1])
    at = rng.randrange(8, 13)
    fields[at] = rng.choice((0, 1, 2, 3, 4, 6, 7, 8, 16, 32, 255) if at < 10 else (0, 1, 2, 255))
    chunks[i][1], chunks[i][2] = bytes(fields), None
    return None


@_png_mutation
def png_idat_truncate(chunks, rng):
    """The image data cut short (CRC made right, so only the zlib stream is short)."""
    idats = [c for c in chunks if c[0] == b"IDAT"]
    if not idats:
        return None
    chunk = rng.choice(idats)
    chunk[1], chunk[2] = chunk[1][:rng.randrange(len(chunk[1]) + 1)], None
    return None


@_png_mutation
def png_idat_refilter(chunks, rng):
    """The inflated rows' filter-type bytes rewritten (to Paeth, Average or no filter type at
    all), the zlib stream and CRC made right: what only the pixel pipeline can notice."""
    at = [i for i, c in enumerate(chunks) if c[0] == b"IDAT"]
    if not at:
        return None
    try:
        raw = bytearray(zlib.decompress(b"".join(chunks[i][1] for i in at)))
    except zlib.error:
        return None
    ihdr = chunks[0][1] if chunks[0][0] == b"IHDR" and len(chunks[0][1]) >= 8 else None
    height = max(1, struct.unpack_from(">I", ihdr, 4)[0]) if ihdr else 1
    row = max(1, len(raw) // height)
    for start in range(0, len(raw), row):
        if rng.random() < 0.3:
            raw[start] = rng.choice((0, 1, 2, 3, 4, 5, 255))
    chunks[at[0]][1], chunks[at[0]][2] = zlib.compress(bytes(raw)), None
    for i in reversed(at[1:]):
        del chunks[i]
    return None


@_png_mutation
def png_drop_chunk(chunks, rng):
    """A chunk removed (IHDR, IDAT, IEND, PLTE...)."""
    del chunks[rng.randrange(len(chunks))]
    return None


@_png_mutation
def png_duplicate_chunk(chunks, rng):
    """A chunk repeated somewhere else (two IHDRs, IDAT after IEND...)."""
    chunk = list(rng.choice(chunks))
    chunks.insert(rng.randrange(len(chunks) + 1), chunk)
    return None


def _exif_blob(rng: random.Random) -> bytes:
    """A TIFF header + one IFD whose Orientation and offsets are edge values."""
    endian = rng.choice((b"II*\0", b"MM\0*"))
    fmt = "<" if endian.startswith(b"II") else ">"
    entries = rng.randrange(0, 3)
    ifd = struct.pack(fmt + "H", rng.choice((1, entries, 0xFFFF)))
    ifd += struct.pack(fmt + "HHII", 0x0112, rng.choice((3, 4, 7)), rng.choice((1, 2, 0xFFFF)),
                       rng.choice((1, 3, 6, 8, 9, 0, 0xFFFF)) << (16 if fmt == ">" else 0))
    if entries > 1:  # an Exif IFD pointer to wherever
        ifd += struct.pack(fmt + "HHII", 0x8769, 4, 1, _edge(rng, EDGE_LENGTHS))
    return endian + struct.pack(fmt + "I", rng.choice((8, 0, 0xFFFFFFFF))) + ifd + b"\0" * 4


@_png_mutation
def png_insert_chunk(chunks, rng):
    """An ancillary chunk the fast path or Pillow must weigh: eXIf, text with EXIF, an ICC
    profile, a palette or transparency of the wrong size, APNG animation control."""
    kind, body = rng.choice([
        (b"eXIf", _exif_blob(rng)),
        (b"tEXt", b"Raw profile type exif\0" + b"\nexif\n  %d\n" % rng.randrange(99999)
         + rng.randbytes(rng.randrange(64)).hex().encode()),
        (b"zTXt", b"Comment\0\0" + zlib.compress(b"x" * rng.randrange(1, 100_000))),
        (b"iCCP", b"icc\0\0" + zlib.compress(rng.randbytes(rng.randrange(200)))),
        (b"PLTE", rng.randbytes(rng.choice((0, 3, 4, 768, 771)))),
        (b"tRNS", rng.randbytes(rng.choice((0, 1, 2, 6, 256)))),
        (b"acTL", struct.pack(">II", rng.choice((0, 1, 2, 2 ** 31)), 0)),
        (b"fcTL", rng.randbytes(26)),
        (b"pHYs", rng.randbytes(9)),
    ])
    chunks.insert(rng.randrange(1, len(chunks) + 1), [kind, body, None])
    return None


# ---- JPEG: markers ------------------------------------------------------------------------

Segment = Tuple[int, bytes]  # (marker, payload without the length field); SOS payload + scan


def jpeg_segments(data: bytes) -> Optional[List[Segment]]:
    """SOI..SOS as segments, then the entropy-coded rest as one (0, bytes) piece."""
    if not data.startswith(b"\xff\xd8"):
        return None
    segments: List[Segment] = [(0xD8, b"")]
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        length = struct.unpack_from(">H", data, at + 2)[0]
        segments.append((marker, data[at + 4:at + 2 + length]))
        at += 2 + length
        if marker == 0xDA:
            break
    segments.append((0, data[at:]))
    return segments


def jpeg_bytes(segments: List[Segment], lengths: Optional[Dict[int, int]] = None) -> bytes:
    out = []
    for i, (marker, payload) in enumerate(segments):
        if marker == 0:
            out.append(payload)
        elif marker in (0xD8, 0xD9) or 0xD0 <= marker <= 0xD7:
            out.append(bytes((0xFF, marker)) + payload)
        else:
            length = (lengths or {}).get(i, len(payload) + 2)
            out.append(bytes((0xFF, marker)) + struct.pack(">H", length & 0xFFFF) + payload)
    return b"".join(out)


def _jpeg_mutation(change: Callable[[List[Segment], random.Random], Optional[bytes]]) -> Mutator:
    def mutate(data: bytes, rng: random.Random) -> bytes:
        segments = jpeg_segments(data)
        if not segments or len(segments) < 3:
            return data
        out = change(segments, rng)
        return jpeg_bytes(segments) if out is None else out
    mutate.__doc__ = change.__doc__
    return mutate


SOF_MARKERS = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)


@_jpeg_mutation
def jpeg_sof_dimensions(segments, rng):
    """The frame header declares other dimensions, precision or component count."""
    at = [i for i, (m, _) in enumerate(segments) if m in SOF_MARKERS]
    if not at:
        return None
    marker, sof = segments[at[0]]
    if len(sof) < 6:
        return None
    precision, height, width, count = struct.unpack_from(">BHHB", sof)
    pick = rng.randrange(4)
    if pick == 0:
        height = _edge(rng, EDGE_SIZES, height) & 0xFFFF
    elif pick == 1:
        width = _edge(rng, EDGE_SIZES, width) & 0xFFFF
    elif pick == 2:
        precision = rng.choice((0, 1, 8, 12, 16, 255))
    else:
        count = rng.choice((0, 1, 2, 3, 4, 255))
    segments[at[0]] = (marker, struct.pack(">BHHB", precision, height, width, count) + sof[6:])
    return None


@_jpeg_mutation
def jpeg_sof_type(segments, rng):
    """Baseline becomes progressive, lossless, hierarchical or arithmetic-coded."""
    at = [i for i, (m, _) in enumerate(segments) if m in SOF_MARKERS]
    if at:
        segments[at[0]] = (rng.choice(SOF_MARKERS), segments[at[0]][1])
    return None


@_jpeg_mutation
def jpeg_drop_marker(segments, rng):
    """A segment removed (a quantisation or Huffman table, the frame header, the scan)."""
    if len(segments) > 3:
        del segments[rng.randrange(1, len(segments) - 1)]
    return None


@_jpeg_mutation
def jpeg_duplicate_marker(segments, rng):
    """A segment repeated (two frame headers, tables after the scan)."""
    segment = segments[rng.randrange(1, len(segments) - 1)]
    segments.insert(rng.randrange(1, len(segments)), segment)
    return None


@_jpeg_mutation
def jpeg_segment_length(segments, rng):
    """A segment's length field says something else than its payload's length."""
    i = rng.randrange(1, len(segments) - 1)
    return jpeg_bytes(segments, {i: rng.choice((0, 1, 2, 3, 0xFFFF,
                                                len(segments[i][1]) + rng.choice((-1, 1, 3))))})


@_jpeg_mutation
def jpeg_insert_segment(segments, rng):
    """An APP or table segment that Pillow parses before decoding: EXIF with edge orientations
    and offsets, an Adobe transform, an ICC profile in pieces, a restart interval, comments."""
    marker, payload = rng.choice([
        (0xE1, b"Exif\0\0" + _exif_blob(rng)),
        (0xEE, b"Adobe" + bytes((0, 100, 0, 0, 0, 0, rng.choice((0, 1, 2, 255))))),
        (0xE2, b"ICC_PROFILE\0" + bytes((rng.randrange(4), rng.randrange(4)))
         + rng.randbytes(rng.randrange(100))),
        (0xDD, struct.pack(">H", rng.choice((0, 1, 0xFFFF)))),
        (0xFE, rng.randbytes(rng.randrange(200))),
        (0xE0, b"JFIF\0" + rng.randbytes(rng.randrange(20))),
    ])
    segments.insert(rng.randrange(1, len(segments) - 1), (marker, payload))
    return None


@_jpeg_mutation
def jpeg_scan_corrupt(segments, rng):
    """Bytes of the entropy-coded scan changed, marker bytes (0xFF xx) among them."""
    scan = bytearray(segments[-1][1])
    for _ in range(rng.randrange(1, 8)):
        if scan:
            scan[rng.randrange(len(scan))] = rng.choice((0xFF, 0x00, 0xD9, 0xD0,
                                                         rng.randrange(256)))
    segments[-1] = (0, bytes(scan))
    return None


# ---- DICOM: tags and pixel data -----------------------------------------------------------

# Attributes the decoder reads, and values that are wrong in interesting ways.
DICOM_TAG_VALUES: Dict[str, Tuple] = {
    "Rows": (0, 1, 16, 31, 6325, 65535),
    "Columns": (0, 1, 16, 31, 6325, 65535),
    "BitsAllocated": (0, 1, 7, 8, 12, 16, 24, 32, 64, 65535),
    "BitsStored": (0, 1, 7, 8, 12, 15, 16, 17, 32, 65535),
    "HighBit": (0, 7, 15, 31, 65535),
    "SamplesPerPixel": (0, 1, 2, 3, 4, 65535),
    "PixelRepresentation": (0, 1, 2, 65535),
    "PlanarConfiguration": (0, 1, 2),
    "PhotometricInterpretation": ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR",
                                  "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "CMYK",
                                  "", "monochrome2"),
    "NumberOfFrames": ("0", "1", "2", "-1", "65536"),
    "RescaleSlope": ("0", "-1", "1e-30", "1e30", "1e308", "NaN", "inf"),
    "RescaleIntercept": ("-1024", "1e30", "NaN", "-inf"),
    "WindowCenter": ("0", "-1e30", "1e30", "NaN", "inf", ["40", "400"]),
    "WindowWidth": ("0", "1", "-1", "0.5", "1e-30", "1e30", "NaN", "inf"),
    "VOILUTFunction": ("LINEAR", "LINEAR_EXACT", "SIGMOID", "", "BOGUS"),
}
TRANSFER_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                     "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                     "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
                     "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99",
                     "1.2.840.10008.1.2.4.201", "", "1.2.3")
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


def _read_dicom(data: bytes):
    if sniff(data) != DICOM:
        return None
    import pydicom
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(io.BytesIO(data))
    except Exception:  # already broken by an earlier mutation: left to the byte-level ones
        return None


def _write_dicom(ds, implicit_vr: Optional[bool] = None,
                 little_endian: Optional[bool] = None) -> Optional[bytes]:
    """The dataset as bytes, encoded as its transfer syntax says unless told otherwise (then
    force_encoding: the bytes contradict the file meta, on purpose)."""
    import pydicom
    out = io.BytesIO()
    if implicit_vr is None:
        syntax = ds.file_meta.get("TransferSyntaxUID")
        implicit_vr = syntax == "1.2.840.10008.1.2"
        little_endian = syntax != "1.2.840.10008.1.2.2"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmwrite(out, ds, implicit_vr=implicit_vr, little_endian=little_endian,
                             enforce_file_format=False, force_encoding=True)
    except Exception:  # a value pydicom refuses to write: this mutation is skipped
        return None
    return out.getvalue()


def dicom_tag_value(data: bytes, rng: random.Random) -> bytes:
    """One or two of the attributes the decoder reads set to a wrong value (or removed)."""
    ds = _read_dicom(data)
    if ds is None:
        return data
    for keyword in rng.sample(sorted(DICOM_TAG_VALUES), rng.choice((1, 1, 2))):
        if rng.random() < 0.1:
            if keyword in ds:
                delattr(ds, keyword)
            continue
        value = rng.choice(DICOM_TAG_VALUES[keyword])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                setattr(ds, keyword, value)
        except Exception:
            continue
    return _write_dicom(ds) or data


def dicom_transfer_syntax(data: bytes, rng: random.Random) -> bytes:
    """The file meta names another transfer syntax than the dataset is encoded in."""
    ds = _read_dicom(data)
    if ds is None:
        return data
    syntax = ds.file_meta.get("TransferSyntaxUID")
    implicit, little = syntax == "1.2.840.10008.1.2", syntax != "1.2.840.10008.1.2.2"
    ds.file_meta.TransferSyntaxUID = rng.choice(TRANSFER_SYNTAXES)
    return _write_dicom(ds, implicit, little) or data


def dicom_lut_sequence(data: bytes, rng: random.Random) -> bytes:
    """A Modality or VOI LUT sequence whose descriptor and data disagree."""
    ds = _read_dicom(data)
    if ds is None:
        return data
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    item = Dataset()
    entries = rng.choice((0, 1, 2, 256, 4096))
    item.LUTDescriptor = [entries, rng.choice((0, 1, 65535)), rng.choice((0, 1, 8, 16, 17, 32))]
    item.LUTData = [rng.randrange(65536) for _ in range(rng.choice((0, 1, entries, 300)))]
    if rng.random() < 0.5:
        item.ModalityLUTType = "HU"
        ds.ModalityLUTSequence = Sequence([item])
    else:
        ds.VOILUTSequence = Sequence([item] * rng.choice((1, 2)))
    return _write_dicom(ds) or data


def dicom_pixel_length(data: bytes, rng: random.Random) -> bytes:
    """The Pixel Data element's length field rewritten: zero, odd, undefined, past the end."""
    at = data.rfind(PIXEL_DATA_TAG)
    if at < 132 or at + 12 > len(data):
        return data
    explicit = data[at + 4:at + 6] in (b"OB", b"OW", b"OD", b"OF", b"OL", b"UN")
    field = at + 8 if explicit else at + 4
    current = struct.unpack_from("<I", data, field)[0]
    new = _edge(rng, EDGE_LENGTHS, current if current != 0xFFFFFFFF else len(data) - field - 4)
    return data[:field] + struct.pack("<I", new & 0xFFFFFFFF) + data[field + 4:]


def dicom_undefined_length(data: bytes, rng: random.Random) -> bytes:
    """An element's 4-byte length (explicit VR OB/OW/SQ/UN/UT, or any implicit one) set to
    0xFFFFFFFF, as if it were a sequence or encapsulated data."""
    spots = [i for i in range(132, len(data) - 12)
             if data[i + 4:i + 6] in (b"OB", b"OW", b"SQ", b"UN", b"UT")
             and data[i + 6:i + 8] == b"\0\0"]
    if not spots:
        return data
    field = rng.choice(spots) + 8
    return data[:field] + b"\xff\xff\xff\xff" + data[field + 4:]


def dicom_fragments(data: bytes, rng: random.Random) -> bytes:
    """Encapsulated pixel data: an item length, the offset table or a frame's own header changed
    (the JPEG or JPEG 2000 codestream inside gets a JPEG-style mutation)."""
    at = data.rfind(PIXEL_DATA_TAG)
    if at < 132 or data[at + 8:at + 12] != b"\xff\xff\xff\xff":
        return data
    items = [i for i in range(at + 12, len(data) - 8) if data[i:i + 4] == b"\xfe\xff\x00\xe0"]
    if not items:
        return data
    item = rng.choice(items)
    if rng.random() < 0.5 or len(items) < 2:
        new = _edge(rng, EDGE_LENGTHS, struct.unpack_from("<I", data, item + 4)[0])
        return data[:item + 4] + struct.pack("<I", new & 0xFFFFFFFF) + data[item + 8:]
    frame_at = items[1] + 8
    frame_len = struct.unpack_from("<I", data, items[1] + 4)[0]
    frame = data[frame_at:frame_at + frame_len]
    if frame.startswith(b"\xff\xd8"):
        mutation = rng.choice([jpeg_sof_dimensions, jpeg_segment_length, jpeg_scan_corrupt])
        frame = mutation(frame, rng)
    elif frame.startswith(b"\xff\x4f\xff\x51") and len(frame) > 16:  # J2K SOC, SIZ: Xsiz Ysiz
        at_size = 8 + 4 * rng.randrange(2)
        frame = (frame[:at_size] + struct.pack(">I", _edge(rng, EDGE_SIZES))
                 + frame[at_size + 4:])
    else:
        frame = frame[:rng.randrange(len(frame) + 1)]
    frame += b"\0" * (len(frame) % 2)
    return (data[:items[1] + 4] + struct.pack("<I", len(frame)) + frame
            + data[frame_at + frame_len:])


def dicom_drop_meta(data: bytes, rng: random.Random) -> bytes:
    """The 'DICM' prefix kept but the file meta group cut, or the preamble shifted by a byte."""
    if sniff(data) != DICOM:
        return data
    if rng.random() < 0.5:
        end = data.find(b"\x08\x00", 132)
        return data[:132] + (data[end:] if end > 0 else b"")
    return data[:rng.randrange(128)] + data[rng.randrange(128):]


# ---- Any format: sizes, truncation, polyglots ---------------------------------------------

def truncate(data: bytes, rng: random.Random) -> bytes:
    """Cut anywhere: inside the signature, the header, or the data."""
    if not data:
        return data
    cut = rng.choice((rng.randrange(len(data)), rng.randrange(min(len(data), 600)),
                      len(data) - rng.randrange(1, min(len(data), 64) + 1)))
    return data[:cut]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    """A few bytes changed, mostly in the first KB where headers are."""
    out = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        if out:
            span = min(len(out), 1024) if rng.random() < 0.8 else len(out)
            out[rng.randrange(span)] = rng.randrange(256)
    return bytes(out)


def zero_length(data: bytes, rng: random.Random) -> bytes:
    """An empty body."""
    return b""


def signature_only(data: bytes, rng: random.Random) -> bytes:
    """Only the magic bytes the format is sniffed by, and perhaps a little more."""
    keep = {PNG: 8, JPEG: 3, DICOM: 132}.get(sniff(data) or "", 4)
    return data[:keep + rng.choice((0, 0, 1, 4, 16))]


def pad_to_limit(data: bytes, rng: random.Random, limit: int = 0) -> bytes:
    """Trailing bytes up to the upload limit, exactly at it, or one byte past it (413)."""
    from chalicelib.settings import DEFAULT_MAX_UPLOAD_BYTES
    size = (limit or DEFAULT_MAX_UPLOAD_BYTES) + rng.choice((0, 0, 1, -1))
    filler = rng.choice((b"\0", b"\xff", b"IDAT", b"\xff\xd9"))
    return (data + filler * (size // len(filler) + 1))[:max(size, len(data))]


def polyglot(data: bytes, rng: random.Random) -> bytes:
    """Two formats in one file: a PNG or JPEG head in a DICOM preamble, a DICOM after a PNG's
    IEND or a JPEG's EOI, a PNG inside a JPEG comment, a DICOM magic at offset 128 of an image."""
    from fuzzing.seeds import load
    other = load(rng.choice(("small-gray8.png", "small-gray.jpg", "small-explicit-12bit.dcm",
                             "small-jpeg-baseline.dcm")))
    pick = rng.randrange(4)
    if pick == 0 and sniff(data) == DICOM:  # a DICOM whose preamble starts like an image
        return (other[:128] + b"\0" * 128)[:128] + data[128:]
    if pick == 1:  # appended after the end
        return data + other
    if pick == 2 and sniff(data) == JPEG:  # a whole other file in a comment segment
        return data[:2] + b"\xff\xfe" + struct.pack(">H", min(len(other), 65533) + 2) \
            + other[:65533] + data[2:]
    # the image's bytes with "DICM" at offset 128, as a DICOM sniffer would look for
    return data[:128].ljust(128, b"\0") + b"DICM" + data[132:]


def splice(data: bytes, rng: random.Random) -> bytes:
    """The head of this file on the tail of another (of any format)."""
    from fuzzing.seeds import load, names
    other = load(rng.choice(names("small")))
    return data[:rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1):]


def png_bomb(data: bytes, rng: random.Random) -> bytes:
    """A valid PNG of constant pixels declaring about the pixel limit (just under, at, just
    over): a few hundred KB that inflate to hundreds of MB if nothing checks the header first.
    Ignores its input: a recipe of one."""
    from chalicelib.settings import DEFAULT_MAX_PIXELS
    color_type, channels, depth = rng.choice(((0, 1, 8), (0, 1, 16), (2, 3, 8), (6, 4, 16)))
    side = int(DEFAULT_MAX_PIXELS ** 0.5) + rng.choice((-1, 0, 1))
    return _bomb(side, DEFAULT_MAX_PIXELS // side + rng.choice((0, 1)), color_type, channels,
                 depth)


@lru_cache(maxsize=8)
def _bomb(width: int, height: int, color_type: int, channels: int, depth: int) -> bytes:
    row = b"\0" * (1 + width * channels * depth // 8)
    compressor = zlib.compressobj(1)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return png_bytes([[b"IHDR", ihdr, None], [b"IDAT", idat, None], [b"IEND", b"", None]])


# name -> (formats it applies to, None = any; the mutation)
MUTATORS: Dict[str, Tuple[Optional[Tuple[str, ...]], Mutator]] = {
    "png_chunk_length": ((PNG,), png_chunk_length),
    "png_bad_crc": ((PNG,), png_bad_crc),
    "png_ihdr_size": ((PNG,), png_ihdr_size),
    "png_ihdr_fields": ((PNG,), png_ihdr_fields),
    "png_idat_truncate": ((PNG,), png_idat_truncate),
    "png_idat_refilter": ((PNG,), png_idat_refilter),
    "png_drop_chunk": ((PNG,), png_drop_chunk),
    "png_duplicate_chunk": ((PNG,), png_duplicate_chunk),
    "png_insert_chunk": ((PNG,), png_insert_chunk),
    "jpeg_sof_dimensions": ((JPEG,), jpeg_sof_dimensions),
    "jpeg_sof_type": ((JPEG,), jpeg_sof_type),
    "jpeg_drop_marker": ((JPEG,), jpeg_drop_marker),
    "jpeg_duplicate_marker": ((JPEG,), jpeg_duplicate_marker),
    "jpeg_segment_length": ((JPEG,), jpeg_segment_length),
    "jpeg_insert_segment": ((JPEG,), jpeg_insert_segment),
    "jpeg_scan_corrupt": ((JPEG,), jpeg_scan_corrupt),
    "dicom_tag_value": ((DICOM,), dicom_tag_value),
    "dicom_transfer_syntax": ((DICOM,), dicom_transfer_syntax),
    "dicom_lut_sequence": ((DICOM,), dicom_lut_sequence),
    "dicom_pixel_length": ((DICOM,), dicom_pixel_length),
    "dicom_undefined_length": ((DICOM,), dicom_undefined_length),
    "dicom_fragments": ((DICOM,), dicom_fragments),
    "dicom_drop_meta": ((DICOM,), dicom_drop_meta),
    "truncate": (None, truncate),
    "flip_bytes": (None, flip_bytes),
    "zero_length": (None, zero_length),
    "signature_only": (None, signature_only),
    "pad_to_limit": (None, pad_to_limit),
    "polyglot": (None, polyglot),
    "splice": (None, splice),
    "png_bomb": (None, png_bomb),
}


def applicable(data: bytes) -> List[str]:
    """The mutations that can change these bytes."""
    found = sniff(data)
    return [name for name, (formats, _) in MUTATORS.items() if formats is None or found in formats]


def apply(data: bytes, mutations: List[str], rng: random.Random) -> bytes:
    for name in mutations:
        data = MUTATORS[name][1](data, rng)
    return data
