"""Which result format a request's Accept header asks for (RFC 9110 content negotiation: q
values, type/* and */* ranges), among the formats a route offers. No Accept means JSON, as
before there were other formats."""
from typing import List, Optional, Sequence, Tuple

from chalicelib.errors import NotAcceptable

JSON = "application/json"
DICOM_SR = "application/dicom"
FHIR = "application/fhir+json"
# what POST /xray and GET /xray/jobs/{job_id} answer, the first being the default
RESULT_TYPES = (JSON, DICOM_SR, FHIR)


def parse_accept(accept: str) -> List[Tuple[str, float, dict]]:
    """'a/b;q=0.5, c/d' -> [(media range, q, other parameters)], in the header's order."""
    ranges = []
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params, q = {}, 1.0
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


def negotiate(accept: Optional[str], offered: Sequence[str] = RESULT_TYPES) -> str:
    """The offered type the Accept header prefers. Each offered type takes the q of the most
    specific range that matches it (a/b over a/* over */*); the highest q wins, then the more
    specific match (so "application/dicom, */*" means the SR), then the header's order, then
    the route's. Raises NotAcceptable listing `offered` when every offered type has q 0."""
    if accept is None or not accept.strip():
        return offered[0]
    ranges = parse_accept(accept)
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
    if chosen is None:
        raise NotAcceptable(f"Accept: {accept} names no format this route answers in. Ask "
                            f"for one of: {', '.join(offered)}.")
    return chosen


def _matches(media: str, choice: str) -> bool:
    if media == "*/*":
        return True
    kind, _, sub = media.partition("/")
    choice_kind, _, choice_sub = choice.partition("/")
    return kind == choice_kind and sub in ("*", choice_sub)


def _specificity(media: str) -> int:
    return 0 if media == "*/*" else 1 if media.endswith("/*") else 2
