"""chalicelib.errors is the one exception-to-HTTP map: every 4xx is a ClientError, so the code
that lets client errors through (the decoder's guard) names one class and misses none."""
import inspect

import pytest
from chalice import ChaliceViewError

from chalicelib import errors


def view_errors():
    return [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, ChaliceViewError) and cls.__module__ == errors.__name__]


def test_every_4xx_is_a_client_error_and_nothing_else_is():
    found = {cls.__name__: cls.STATUS_CODE for cls in view_errors()}
    assert {"InvalidImage", "OriginNotAllowed", "PayloadTooLarge", "UnsupportedImageType",
            "UnclassifiableImage", "ModelUnavailable"} <= set(found)
    for cls in view_errors():
        assert issubclass(cls, errors.ClientError) == (400 <= cls.STATUS_CODE < 500), cls


def test_a_decoder_raising_any_client_error_is_answered_with_it_not_as_corrupt():
    from chalicelib.imaging.dispatch import _guarded

    class Refusal(errors.ClientError):
        STATUS_CODE = 422

    def decoder():
        raise Refusal("said by the decoder")

    with pytest.raises(Refusal, match="said by the decoder"):
        _guarded("PNG", decoder)
