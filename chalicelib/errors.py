"""The exception-to-HTTP map. Chalice turns each into `{"Code": <class name>, "Message": ...}`
with the class's STATUS_CODE, the same shape as the errors Chalice itself sends (404, 405, 415).
Every 4xx derives from ClientError, so code that must let client errors through (and only them)
names one class."""
from typing import Dict, List, Optional, Union

from chalice import ChaliceViewError, Response


class ClientError(ChaliceViewError):
    """The request cannot be served as sent; the message says what to change."""
    STATUS_CODE = 400


class InvalidImage(ClientError):
    """The body is empty, truncated or corrupt."""
    STATUS_CODE = 400


class InvalidParameter(ClientError):
    """A query parameter with a value we cannot use (e.g. an unknown heatmap label)."""
    STATUS_CODE = 400


class OriginNotAllowed(ClientError):
    """A browser preflight from an origin that XRAY_CORS_ORIGINS does not list."""
    STATUS_CODE = 403


class PayloadTooLarge(ClientError):
    """Too many bytes, or too many pixels once decoded (a decompression bomb)."""
    STATUS_CODE = 413


class UnsupportedImageType(ClientError):
    """Not a format we serve, or the bytes contradict the declared Content-Type."""
    STATUS_CODE = 415


class UnclassifiableImage(ClientError):
    """A readable file that holds no single 2-D image we can classify."""
    STATUS_CODE = 422


class NotAChestRadiograph(ClientError):
    """A DICOM whose header says it is not what the model was made for (its Modality or
    BodyPartExamined is outside the model's intended use): ?force=true classifies it anyway."""
    STATUS_CODE = 422


class UnsupportedView(ClientError):
    """A chest radiograph taken from a view the model was not made for (a lateral for a frontal
    model): ?force=true classifies it anyway."""
    STATUS_CODE = 422


class NotAcceptable(ClientError):
    """The Accept header names no result format we produce; the message lists them."""
    STATUS_CODE = 406


class ModelUnavailable(ChaliceViewError):
    """The model could not be loaded; /health says why. A server-side state, not a client error.
    retry_after_s, when known, is when a retry can succeed: response() sends it as Retry-After
    (Chalice's own mapping of a raised error carries no headers)."""
    STATUS_CODE = 503

    def __init__(self, message: str, retry_after_s: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def response(self) -> Response:
        headers: Dict[str, Union[str, List[str]]] = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(self.retry_after_s)))  # whole seconds
        return Response(body={"Code": type(self).__name__, "Message": str(self)},
                        status_code=self.STATUS_CODE, headers=headers)


class ModelStillLoading(ModelUnavailable):
    """The model is being loaded (a slow store) and was not ready before this request's
    deadline: answered before the function's timeout, so never API Gateway's bare 504."""
    STATUS_CODE = 503


class InvalidJobRequest(ClientError):
    """POST /xray/jobs with a body that is not the JSON object the contract describes."""
    STATUS_CODE = 400


class InvalidStowRequest(ClientError):
    """POST /studies with a body that is not the multipart/related of DICOM instances PS3.18
    10.5 describes (no boundary, no parts, a type other than application/dicom, a torn body)."""
    STATUS_CODE = 400


class JobNotFound(ClientError):
    """No job has this id (never had, expired, or deleted)."""
    STATUS_CODE = 404


class JobsUnavailable(ChaliceViewError):
    """The stage has no jobs bucket, or S3 did not answer: a server-side state."""
    STATUS_CODE = 503


class NotifierMisconfigured(ChaliceViewError):
    """The notifier cannot sign webhooks: the stage's secret is missing, unreadable or not a
    Standard Webhooks secret (whsec_<base64>). Raised before anything is claimed, so the event's
    retry can still send once an operator fixes the secret. Never reaches a client."""
    STATUS_CODE = 500


class NotificationFailed(ChaliceViewError):
    """A notification could not be delivered (SES refused, or the webhook kept failing). Raised
    after every channel of the job was tried, with the failed channel's claim released, so
    Lambda's retry of the event tries that channel again. Never reaches a client."""
    STATUS_CODE = 502
