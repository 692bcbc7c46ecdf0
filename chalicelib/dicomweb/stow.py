"""STOW-RS (PS3.18 10.5) over the classification service: each instance of a multipart/related
body is classified as POST /xray would classify it alone, and the answer is the Store Instances
Response Module (PS3.18 Annex I) in DICOM JSON (PS3.18 F.2), or the classified instances' SRs.

"Stored" here means classified: nothing is kept. An instance we could not classify is in the
Failed SOP Sequence (0008,1198) with a Failure Reason (0008,1197) from PS3.18 Table I.2-2
(FAILURE_REASONS below says which error gets which, and why); a classified one is in the
Referenced SOP Sequence (0008,1199), its JSON answer in a private element of its item, so that a
DICOM JSON reader keeps the findings beside the UIDs they belong to. Retrieve URL (0008,1190) is
Type 2 there and at the top: present and empty, since no instance can be retrieved from us.

The HTTP status follows PS3.18 Table 10.5.3-1: 200 when every instance was classified, 202 when
some were not, 409 when none was; a body that is not a multipart/related of DICOM instances is a
400 (bad syntax), one over the synchronous limit a 413 pointing to the upload jobs.

Nothing here logs: the request line and the audit line (chalicelib/observability) get counts
and failure codes (notes()), never a UID, patient or study field."""
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from chalice import Response

from chalicelib.dicomweb import DICOM_JSON, MULTIPART_RELATED, multipart
from chalicelib.errors import (
    ClientError,
    InvalidImage,
    InvalidStowRequest,
    NotAChestRadiograph,
    PayloadTooLarge,
    UnclassifiableImage,
    UnsupportedImageType,
    UnsupportedView,
)
from chalicelib.imaging.formats import CONTENT_TYPE_OF_FORMAT, media_type
from chalicelib.imaging.formats import DICOM as DICOM_FORMAT
from chalicelib.reports.negotiation import DICOM_SR
from chalicelib.reports.negotiation import negotiate as negotiate_media

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from chalicelib.service import Classification, XrayService

# Failure Reason (0008,1197) values, PS3.18 Table I.2-2 ("the single most appropriate code").
PROCESSING_FAILURE = 0x0110        # a general failure in processing: what no other code says
SOP_CLASS_NOT_SUPPORTED = 0x0122   # "does not support the requested SOP Class"
OUT_OF_RESOURCES = 0xA700          # A7xx "Refused out of Resources"
DOES_NOT_MATCH = 0xA900            # A9xx "Error: Data Set does not match"
CANNOT_UNDERSTAND = 0xC000         # Cxxx "Error: Cannot understand"
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
# An error of the classification service -> its Failure Reason (the first class that matches):
# - not DICOM, truncated or corrupt: the instance cannot be understood;
# - no single 2-D image (an SR, a multi-frame object), or an image the model was not made for
#   (NotAChestRadiograph, UnsupportedView: ?force=true classifies it): of Table I.2-2's codes,
#   "does not support the requested SOP Class" is what says "this service takes no such
#   instance"; the private error element says which rule refused it;
# - too many pixels: refused out of resources (the instance is not wrong, only too large);
# - anything else a client error can say: a processing failure.
# An unsupported transfer syntax (UnsupportedImageType for a syntax the decoder lacks) is C122.
FAILURE_REASONS = (
    (InvalidImage, CANNOT_UNDERSTAND),
    (UnsupportedImageType, CANNOT_UNDERSTAND),
    (UnclassifiableImage, SOP_CLASS_NOT_SUPPORTED),
    (NotAChestRadiograph, SOP_CLASS_NOT_SUPPORTED),
    (UnsupportedView, SOP_CLASS_NOT_SUPPORTED),
    (PayloadTooLarge, OUT_OF_RESOURCES),
)
# The Code of the private error element for failures that are no exception of the service
STUDY_MISMATCH, OUT_OF_TIME = "StudyMismatch", "OutOfTime"

# Our private block (PS3.5 7.8.1): creator (0009,0010) reserves elements (0009,10xx).
PRIVATE_CREATOR = "CHEST_XRAY_SERVERLESS"
CREATOR_TAG = "00090010"
ANSWER_TAG = "00091001"  # UT: the instance's JSON answer, exactly what POST /xray answers
ERROR_TAG = "00091002"   # UT: why the instance failed, {"Code", "Message"} as POST /xray says it

DICOM = CONTENT_TYPE_OF_FORMAT[DICOM_FORMAT]  # an instance's media type
# Classifying (and making the SRs, when asked) stops once this much time went by, the first
# instance always tried: API Gateway gives up on a request after 29 s, and the last instance
# started still has to finish. Those not tried fail with OUT_OF_RESOURCES, to be sent again.
BUDGET_S = 20.0
# Elements read before (0020,000D) to find the UIDs; a radiograph has a few dozen there.
MAX_IDENTITY_ELEMENTS = 2_000
STUDY_INSTANCE_UID = 0x0020000D


@dataclass(frozen=True)
class Identity:
    """What an instance says it is (readable: the bytes parsed as DICOM at all)."""
    readable: bool = False
    sop_class: Optional[str] = None
    sop_instance: Optional[str] = None
    study: Optional[str] = field(default=None, repr=False)  # a study field: never logged
    transfer_syntax: Optional[str] = None


@dataclass
class Outcome:
    identity: Identity
    answer: Optional[Dict[str, Any]] = None   # classified: what POST /xray answers
    header: Optional["Dataset"] = field(default=None, repr=False)  # for the SR
    reason: Optional[int] = None              # failed: its Failure Reason
    error: Optional[Dict[str, str]] = None    # failed: {"Code", "Message"}
    report: Optional[bytes] = field(default=None, repr=False)  # its SR, when asked for

    @property
    def classified(self) -> bool:
        return self.reason is None


def negotiate(accept: Optional[str]) -> str:
    """DICOM_JSON (also for no Accept) or MULTIPART_RELATED (only with type application/dicom,
    or no type: the SRs are all we send as multipart, and only as Accept's first media type:
    reports/negotiation.py); NotAcceptable otherwise."""
    return negotiate_media(
        accept, (DICOM_JSON, MULTIPART_RELATED), binary=(MULTIPART_RELATED,),
        keep=lambda media, params: (media != MULTIPART_RELATED
                                    or params.get("type", DICOM).lower() == DICOM),
        formats=f"{DICOM_JSON} (the Store Instances Response Module with each instance's "
                f'findings, the default) or {MULTIPART_RELATED}; type="{DICOM}" (the classified '
                f"instances' SRs)")


def store(service: "XrayService", body: bytes, content_type: str, *, max_bytes: int,
          study: Optional[str] = None, force: bool = False, deadline: Optional[float] = None,
          reports: bool = False, budget_s: float = BUDGET_S,
          clock: Callable[[], float] = time.monotonic) -> List[Outcome]:
    """Every part's outcome, in the body's order. study: the {study} of POST /studies/{study}
    (instances of another study fail); force: classify what the model was not made for;
    deadline: how long to wait for a model still loading (the service's); reports: make each
    classified instance's SR as it goes (for MULTIPART_RELATED), inside the budget. Raises
    PayloadTooLarge and InvalidStowRequest for the request as a whole; ModelUnavailable
    (the model cannot answer) too, since no instance could then be classified."""
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"The body is {len(body):,} bytes; this route takes at most {max_bytes:,} bytes per "
            f"request (a Lambda request holds 6 MB after base64). Send fewer instances per "
            f"request, or a larger instance alone through the upload jobs (POST /xray/jobs).")
    if not body:
        raise InvalidStowRequest(
            "The request body is empty: send the multipart/related body with a Content-Length "
            "(chalice local drops a chunked body: with Orthanc's STOW-RS client, set "
            '"ChunkedTransfers": false on the server entry).')
    try:
        related = multipart.related(content_type)
        if related.media_type != MULTIPART_RELATED:
            raise InvalidStowRequest(f"STOW-RS takes {MULTIPART_RELATED}, not "
                                     f"{related.media_type}.")
        if related.type not in (None, DICOM):
            raise InvalidStowRequest(
                f"The multipart's type is {related.type}; this route takes DICOM instances only "
                f'(type="{DICOM}"), not metadata and bulk data.')
        parts = multipart.split(body, related.boundary)
    except multipart.MalformedMultipart as error:
        raise InvalidStowRequest(str(error)) from None
    started, tried = clock(), [0]

    def classify(instance: bytes) -> Optional["Classification"]:
        """The service's classification, or None once the budget is spent."""
        if tried[0] and clock() - started > budget_s:
            return None
        tried[0] += 1
        return service.classify(instance, DICOM, deadline=deadline, force=force)
    outcomes = []
    for number, part in enumerate(parts, 1):
        outcome = _instance(part, number, study, classify)
        if reports and outcome.answer is not None:
            from chalicelib.reports.sr import build_sr
            outcome.report = build_sr(outcome.answer, outcome.header, None)
        outcomes.append(outcome)
    return outcomes


def status_code(outcomes: Sequence[Outcome]) -> int:
    classified = sum(outcome.classified for outcome in outcomes)
    return 200 if classified == len(outcomes) else 202 if classified else 409


def response_module(outcomes: Sequence[Outcome]) -> Dict[str, Any]:
    """The Store Instances Response Module (PS3.18 Table I.1-1) as DICOM JSON."""
    module: Dict[str, Any] = {"00081190": {"vr": "UR"}}  # Type 2: no study to retrieve here
    failed = [_failed_item(outcome) for outcome in outcomes if not outcome.classified]
    referenced = [_referenced_item(outcome) for outcome in outcomes if outcome.classified]
    if failed:
        module["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        module["00081199"] = {"vr": "SQ", "Value": referenced}
    return module


def respond(outcomes: Sequence[Outcome], media: str) -> Response:
    """The module as DICOM JSON, or (MULTIPART_RELATED: store(..., reports=True) made them) one
    SR per classified instance, in the body's order, followed, when some instance failed, by a
    last application/dicom+json part holding the module (what failed, and why). With no
    instance classified there is no SR to send: the answer is then the module, whatever was
    asked."""
    status = status_code(outcomes)
    headers: Dict[str, Union[str, List[str]]] = {"Vary": "Accept"}
    if media != MULTIPART_RELATED or status == 409:
        return Response(body=response_module(outcomes), status_code=status,
                        headers={**headers, "Content-Type": DICOM_JSON})
    parts: List[Tuple[str, bytes]] = []
    for outcome in outcomes:
        if outcome.classified:
            if outcome.report is None:
                raise ValueError("respond() with multipart/related needs store(reports=True)")
            parts.append((DICOM_SR, outcome.report))
    if status == 202:
        parts.append((DICOM_JSON, _compact(response_module(outcomes)).encode()))
    boundary = multipart.new_boundary()
    return Response(body=multipart.join(parts, boundary), status_code=status,
                    headers={**headers, "Content-Type": multipart.content_type(boundary,
                                                                               DICOM_SR)})


def notes(outcomes: Sequence[Outcome]) -> Dict[str, Any]:
    """What the request line and the audit line may say of a STOW request: counts, failure
    codes and the summed timings of the classified instances. No UID, no finding."""
    timings: Dict[str, float] = {}
    failures: Dict[str, int] = {}
    for outcome in outcomes:
        if outcome.answer is not None:
            for step, ms in outcome.answer.get("timings_ms", {}).items():
                timings[step] = round(timings.get(step, 0.0) + float(ms), 2)
        if outcome.reason is not None:
            code = f"0x{outcome.reason:04X}"
            failures[code] = failures.get(code, 0) + 1
    stow = {"instances": len(outcomes),
            "classified": sum(outcome.classified for outcome in outcomes),
            "failure_reasons": failures}
    return {"timings_ms": timings, "stow": stow} if timings else {"stow": stow}


def identify(body: bytes) -> Identity:
    """The SOP Class, SOP Instance and Study Instance UIDs and the transfer syntax of a DICOM
    instance, read from its first elements only (reading stops at (0020,000D)). A value that is
    not a well-formed UID is taken as absent, never echoed; bytes that are not DICOM give
    Identity() (the classification then says why)."""
    import io
    import warnings

    import pydicom.filereader
    seen = [0]

    def stop_when(tag: int, vr: Any, length: int) -> bool:
        seen[0] += 1
        return tag > STUDY_INSTANCE_UID or seen[0] > MAX_IDENTITY_ELEMENTS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # their text may quote header values
            ds = pydicom.filereader.read_partial(io.BytesIO(body), stop_when=stop_when)
            meta = ds.file_meta
            return Identity(True, _uid(ds.get("SOPClassUID") or
                                       meta.get("MediaStorageSOPClassUID")),
                            _uid(ds.get("SOPInstanceUID") or
                                 meta.get("MediaStorageSOPInstanceUID")),
                            _uid(ds.get("StudyInstanceUID")),
                            _uid(meta.get("TransferSyntaxUID")))
    except Exception:  # malformed DICOM raises many types; the classification reports it
        return Identity()


def _instance(part: multipart.Part, number: int, study: Optional[str],
              classify: Callable[[bytes], Optional["Classification"]]) -> Outcome:
    if part.problem is not None:
        return _failure(Identity(), CANNOT_UNDERSTAND, InvalidStowRequest.__name__,
                        f"Part {number} cannot be read: {part.problem}.")
    declared = media_type(part.content_type) if part.content_type is not None else DICOM
    if declared != DICOM:
        return _failure(Identity(), CANNOT_UNDERSTAND, UnsupportedImageType.__name__,
                        f"Part {number} is {declared}, not {DICOM}: STOW-RS takes DICOM "
                        f"instances (POST /xray takes PNG and JPEG).")
    encoding = part.headers.get("content-transfer-encoding", "binary").lower()
    if encoding not in ("binary", "8bit", "7bit"):
        return _failure(Identity(), CANNOT_UNDERSTAND, InvalidStowRequest.__name__,
                        f"Part {number} has Content-Transfer-Encoding {encoding}: send the "
                        f"instance's bytes as they are (binary).")
    identity = identify(part.body)
    if study is not None and identity.readable and identity.study != study:
        return _failure(identity, DOES_NOT_MATCH, STUDY_MISMATCH,
                        f"Part {number} is an instance of another study than the one of the "
                        f"request's URL (/studies/{{study}}): send it to /studies, or to its "
                        f"own study's URL.")
    try:
        classification = classify(part.body)
    except ClientError as error:
        return _failure(identity, _reason(error, identity), type(error).__name__, str(error))
    if classification is None:
        return _failure(identity, OUT_OF_RESOURCES, OUT_OF_TIME,
                        f"Part {number} was not classified: the request ran out of time on "
                        f"the instances before it. Send it again in another request.")
    return Outcome(identity, classification.answer, classification.header)


def _reason(error: ClientError, identity: Identity) -> int:
    if isinstance(error, UnsupportedImageType) and identity.transfer_syntax is not None:
        from chalicelib.imaging.dicom import SUPPORTED_TRANSFER_SYNTAXES
        if identity.transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
            return TRANSFER_SYNTAX_NOT_SUPPORTED
    return next((reason for kind, reason in FAILURE_REASONS if isinstance(error, kind)),
                PROCESSING_FAILURE)


def _failure(identity: Identity, reason: int, code: str, message: str) -> Outcome:
    return Outcome(identity, reason=reason, error={"Code": code, "Message": message})


def _reference(identity: Identity) -> Dict[str, Any]:
    """The SOP Instance Reference Macro (PS3.3 Table 10-11), with the UIDs that could be read."""
    item: Dict[str, Any] = {}
    if identity.sop_class:
        item["00081150"] = {"vr": "UI", "Value": [identity.sop_class]}
    if identity.sop_instance:
        item["00081155"] = {"vr": "UI", "Value": [identity.sop_instance]}
    return item


def _referenced_item(outcome: Outcome) -> Dict[str, Any]:
    return {**_reference(outcome.identity), "00081190": {"vr": "UR"},
            CREATOR_TAG: {"vr": "LO", "Value": [PRIVATE_CREATOR]},
            ANSWER_TAG: {"vr": "UT", "Value": [_compact(outcome.answer)]}}


def _failed_item(outcome: Outcome) -> Dict[str, Any]:
    return {**_reference(outcome.identity), "00081197": {"vr": "US", "Value": [outcome.reason]},
            CREATOR_TAG: {"vr": "LO", "Value": [PRIVATE_CREATOR]},
            ERROR_TAG: {"vr": "UT", "Value": [_compact(outcome.error)]}}


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _uid(value: Any) -> Optional[str]:
    if value is None:
        return None
    from pydicom.uid import UID
    text = str(value).strip()
    return text if text and UID(text).is_valid else None
