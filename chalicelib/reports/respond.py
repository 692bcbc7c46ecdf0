"""A classification as the HTTP answer its request negotiated (negotiation.py): the JSON answer
itself, its DICOM SR (sr.py) or its FHIR Bundle (fhir.py). The builders are imported only for
their format: highdicom costs a few hundred milliseconds to import."""
from datetime import datetime
from typing import TYPE_CHECKING, Any, Dict, Optional

from chalice import Response

from chalicelib.reports.negotiation import DICOM_SR, FHIR, JSON

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


def respond(answer: Dict[str, Any], header: Optional["Dataset"], media: str,
            uid_seed: Optional[str] = None, made_at: Optional[datetime] = None) -> Response:
    """answer: what POST /xray answers as JSON; header: a DICOM input's header (None for PNG
    and JPEG); media: a negotiated type; uid_seed and made_at: what the report's UIDs derive
    from and when it was made, when the same result must always give the same report (an
    upload job's: its id and when it finished), None for new UIDs made now."""
    body: Any
    if media == JSON:
        body = answer
    elif media == DICOM_SR:
        from chalicelib.reports.sr import build_sr
        body = build_sr(answer, header, uid_seed, made_at)
    elif media == FHIR:
        from chalicelib.reports.fhir import build_bundle
        body = build_bundle(answer, header, uid_seed, made_at)
    else:
        raise ValueError(f"no renderer for {media}")  # negotiate() offers only the three
    return Response(body=body, headers={"Content-Type": media, "Vary": "Accept"})
