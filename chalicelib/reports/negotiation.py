"""Which result format a request's Accept header asks for (RFC 9110 content negotiation: q
values, type/* and */* ranges), among the formats a route offers. No Accept means the route's
first format (JSON), as before there were other formats.

A binary format (the SR, STOW-RS's multipart SRs) is answered only when its type is the Accept
header's first: API Gateway turns a base64 answer back into bytes by the first media type alone
and would hand any other client the bytes as base64 text. A header that prefers it further on
gets the best text format it takes, else a 406 saying to put the binary type first."""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from chalicelib.errors import NotAcceptable

JSON = "application/json"
DICOM_SR = "application/dicom"
FHIR = "application/fhir+json"
# what POST /xray and GET /xray/jobs/{job_id} answer, the first being the default
RESULT_TYPES = (JSON, DICOM_SR, FHIR)


def parse_accept(accept: str) -> List[Tuple[str, float, Dict[str, str]]]:
    """'a/b;q=0.5, c/d' -> [(media range, q, other parameters)], in the header's order."""
    ranges = []
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params: Dict[str, str] = {}
        q = 1.0
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0  # a malformed weight: not a format to choose
            elif name:
                params[name] = value
        ranges.append((pieces[0].lower(), q, params))
    return ranges


def negotiate(accept: Optional[str], offered: Sequence[str] = RESULT_TYPES, *,
              binary: Sequence[str] = (DICOM_SR,),
              keep: Optional[Callable[[str, Dict[str, str]], bool]] = None,
              formats: Optional[str] = None) -> str:
    """The offered type the Accept header prefers (choose()), a binary one only as its first
    media type. keep: which ranges count, by media range and parameters (a route may need a
    parameter, as STOW-RS needs multipart/related's type); formats: what the 406 lists (the
    offered types by default). Raises NotAcceptable when nothing offered is acceptable."""
    if accept is None or not accept.strip():
        return offered[0]
    ranges = [(media, q, params) for media, q, params in parse_accept(accept)
              if keep is None or keep(media, params)]
    chosen = choose(ranges, offered)
    if chosen in binary and ranges[0][0] != chosen:
        chosen = choose(ranges, [media for media in offered if media not in binary])
        if chosen is None:
            raise NotAcceptable(f"Accept: {accept} asks for a binary answer, but not as its "
                                f"first media type, which API Gateway needs to send it as bytes: "
                                f"put {' or '.join(binary)} first.")
    if chosen is None:
        raise NotAcceptable(f"Accept: {accept} names no format this route answers in. Ask "
                            f"for {formats or 'one of: ' + ', '.join(offered)}.")
    return chosen


def choose(ranges: Sequence[Tuple[str, float, Dict[str, str]]],
           offered: Sequence[str]) -> Optional[str]:
    """RFC 9110's choice: each offered type takes the q of the most specific range that
    matches it (a/b over a/* over */*); the highest q wins, then the more specific match (so
    "application/dicom, */*" means the SR), then the header's order, then the route's. None
    when every offered type has q 0."""
    best: Optional[Tuple[float, int, int, int]] = None
    chosen = None
    for order, choice in enumerate(offered):
        matching = [(_specificity(media), -position, q)
                    for position, (media, q, _) in enumerate(ranges) if _matches(media, choice)]
        if not matching:
            continue
        specificity, position, q = max(matching)  # the most specific range, the first of equals
        rank = (q, specificity, position, -order)
        if q > 0 and (best is None or rank > best):
            best, chosen = rank, choice
    return chosen


def _matches(media: str, choice: str) -> bool:
    if media == "*/*":
        return True
    kind, _, sub = media.partition("/")
    choice_kind, _, choice_sub = choice.partition("/")
    return kind == choice_kind and sub in ("*", choice_sub)


def _specificity(media: str) -> int:
    return 0 if media == "*/*" else 1 if media.endswith("/*") else 2
