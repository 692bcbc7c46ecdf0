"""Client errors. Chalice turns each into `{"Code": <class name>, "Message": ...}` with the
class's STATUS_CODE, the same shape as the errors Chalice itself sends (404, 405, 415)."""
from chalice import ChaliceViewError


class InvalidImage(ChaliceViewError):
    """The body is empty, truncated or corrupt."""
    STATUS_CODE = 400


class InvalidParameter(ChaliceViewError):
    """A query parameter with a value we cannot use (e.g. an unknown heatmap label)."""
    STATUS_CODE = 400


class PayloadTooLarge(ChaliceViewError):
    """Too many bytes, or too many pixels once decoded (a decompression bomb)."""
    STATUS_CODE = 413


class UnsupportedImageType(ChaliceViewError):
    """Not a format we serve, or the bytes contradict the declared Content-Type."""
    STATUS_CODE = 415


class UnclassifiableImage(ChaliceViewError):
    """A readable file that holds no single 2-D image we can classify."""
    STATUS_CODE = 422


class ModelUnavailable(ChaliceViewError):
    """The model could not be loaded; /health says why."""
    STATUS_CODE = 503
