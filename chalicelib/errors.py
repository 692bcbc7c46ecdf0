"""The exception-to-HTTP map. Chalice turns each into `{"Code": <class name>, "Message": ...}`
with the class's STATUS_CODE, the same shape as the errors Chalice itself sends (404, 405, 415).
Every 4xx derives from ClientError, so code that must let client errors through (and only them)
names one class."""
from chalice import ChaliceViewError


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


class ModelUnavailable(ChaliceViewError):
    """The model could not be loaded; /health says why. A server-side state, not a client error."""
    STATUS_CODE = 503
