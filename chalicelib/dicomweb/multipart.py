"""multipart/related bodies (RFC 2387 on RFC 2046's multipart syntax), as STOW-RS sends
instances and as we send SRs back.

A small parser of our own rather than the standard library's email package, which reads the
right bytes but parses a body line by line as text (a DICOM instance is binary, its CR and LF
bytes anywhere), far slower than cutting it at its delimiters with bytes.find, and which takes
a body cut short as complete (noting a defect nobody reads). Here the syntax is followed
strictly: delimiters are CRLF "--" boundary, a delimiter line may end in transport padding
(spaces, tabs), the preamble before the first delimiter and the epilogue after the close
delimiter are ignored, and a body that ends before its close delimiter is refused. A part whose
own headers cannot be read is returned with the problem, so that the instances beside it are
still served. The Content-Type header's parameters (quoted strings, RFC 2231) are read by the
standard library, which does that well.

Standard library only (the batch client builds its STOW-RS requests with it): a malformed body
raises MalformedMultipart, which the route turns into its 400."""
import secrets
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

CRLF = b"\r\n"
PADDING = b" \t"
# RFC 2046 5.1.1 allows 70 characters, but real senders go past it: Orthanc's STOW-RS client
# sends two UUIDs (73). Longer ones are taken, up to a bound that keeps the search cheap.
MAX_BOUNDARY = 200
MAX_HEADER_BYTES = 16 * 1024  # a part's header section; DICOMweb parts have one or two lines


class MalformedMultipart(ValueError):
    """The body or its Content-Type is not multipart as RFC 2046 defines it; the message says
    what to fix."""


@dataclass(frozen=True)
class Related:
    """A multipart Content-Type's media type and the parameters that matter here."""
    media_type: str
    boundary: str
    type: Optional[str]  # the type parameter, lower-case; None when absent


@dataclass(frozen=True)
class Part:
    headers: Dict[str, str]  # lower-case names
    body: bytes = field(repr=False)
    problem: Optional[str] = None  # why this part's headers cannot be read, or None

    @property
    def content_type(self) -> Optional[str]:
        return self.headers.get("content-type")


def related(content_type: str) -> Related:
    """The boundary and type parameter of a multipart Content-Type; MalformedMultipart when it
    is not multipart or has no usable boundary."""
    from email.message import Message
    from email.utils import collapse_rfc2231_value
    header = Message()
    header["Content-Type"] = content_type
    media = header.get_content_type()
    if not media.startswith("multipart/"):
        raise MalformedMultipart(f"Content-Type {content_type!r} is not multipart: send "
                                 f'multipart/related; type="application/dicom"; boundary=...')
    boundary = header.get_boundary()
    if not boundary or len(boundary) > MAX_BOUNDARY or "\r" in boundary or "\n" in boundary:
        raise MalformedMultipart(
            f"The Content-Type has no usable boundary parameter (1 to 70 characters, "
            f"{MAX_BOUNDARY} at most here, quoted if it holds spaces or separators): send "
            f'multipart/related; type="application/dicom"; boundary=<the string between the '
            f"parts>.")
    kind = header.get_param("type")
    if isinstance(kind, tuple):  # RFC 2231 encoded
        kind = collapse_rfc2231_value(kind)
    return Related(media, boundary, kind.strip().lower() if isinstance(kind, str) else None)


def split(body: bytes, boundary: str) -> List[Part]:
    """The parts of a multipart body. MalformedMultipart when the boundary never appears as a
    delimiter, the body holds no part, or it ends before its close delimiter."""
    dash = b"--" + boundary.encode("latin-1")
    delimiter = CRLF + dash
    if body.startswith(dash) and _delimits(body, len(dash)):
        position = len(dash)
    else:
        position = _find(body, delimiter, 0)
        if position < 0:
            raise MalformedMultipart(_no_delimiter(body, dash))
        position += len(delimiter)
    parts: List[Part] = []
    while not body.startswith(b"--", position):  # "--boundary--" closes the body
        start = _line_end(body, position)
        end = _find(body, delimiter, start)
        if end < 0:
            raise MalformedMultipart(
                f"The body ends inside part {len(parts) + 1}, before the close delimiter "
                f"--{boundary}--: the upload was cut short, or a part holds no CRLF before "
                f"its delimiter.")
        parts.append(_part(body[start:end]))
        position = end + len(delimiter)
    if not parts:
        raise MalformedMultipart("The multipart body holds no part: send one DICOM instance per "
                                 "part.")
    return parts


def join(parts: Sequence[Tuple[str, bytes]], boundary: str) -> bytes:
    """A multipart body of (content type, bytes) parts."""
    dash = b"--" + boundary.encode("latin-1")
    chunks = []
    for content_type, data in parts:
        chunks += [dash, CRLF, b"Content-Type: ", content_type.encode("latin-1"), CRLF, CRLF,
                   data, CRLF]
    chunks += [dash, b"--", CRLF]
    return b"".join(chunks)


def new_boundary() -> str:
    """A boundary no part will contain (128 random bits)."""
    return "cxr-" + secrets.token_hex(16)


def content_type(boundary: str, kind: str) -> str:
    return f'multipart/related; type="{kind}"; boundary={boundary}'


def _delimits(body: bytes, after: int) -> bool:
    """Whether a boundary ending at `after` is a delimiter: followed by "--" (the close
    delimiter) or by transport padding and CRLF. Otherwise it is only the start of a longer
    string that happens to begin like the boundary."""
    if body.startswith(b"--", after):
        return True
    while after < len(body) and body[after] in PADDING:
        after += 1
    return body.startswith(CRLF, after)


def _find(body: bytes, delimiter: bytes, start: int) -> int:
    """The next delimiter at or after start (its CRLF), or -1."""
    while True:
        found = body.find(delimiter, start)
        if found < 0 or _delimits(body, found + len(delimiter)):
            return found
        start = found + 1


def _line_end(body: bytes, position: int) -> int:
    """Past the transport padding and CRLF that end a delimiter line (checked by _delimits)."""
    while body[position] in PADDING:
        position += 1
    return position + len(CRLF)


def _part(data: bytes) -> Part:
    if data.startswith(CRLF):  # no header fields at all
        return Part({}, data[len(CRLF):])
    end = data.find(CRLF + CRLF, 0, MAX_HEADER_BYTES)
    if end < 0:
        return Part({}, b"", "its header fields are not followed by an empty line (CRLF CRLF)")
    headers: Dict[str, str] = {}
    name = None
    for line in data[:end].decode("latin-1").split("\r\n"):
        if line[:1] in (" ", "\t") and name is not None:  # a folded line continues the last
            headers[name] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            return Part({}, b"", "one of its header lines is not 'Name: value'")
        headers[name] = value.strip()
    return Part(headers, data[end + 2 * len(CRLF):])


def _no_delimiter(body: bytes, dash: bytes) -> str:
    if b"\n" + dash in body:
        return ("The body's boundary lines end in LF, not CRLF: multipart needs CRLF line ends "
                "(build the body as bytes, e.g. with printf '\\r\\n', not echo).")
    return ("The boundary of the Content-Type never appears in the body as a delimiter line "
            "(--boundary): is the Content-Type's boundary the body's?")
