"""upload_bytes decodes what API Gateway sends exactly as Chalice's raw_body does, only faster."""
import base64
import os

import pytest
from chalice.app import Request

from chalicelib.web.uploads import upload_bytes
from lambda_sim.events import proxy_event
from tests.support.fixtures import PNG_CARDIOMEGALY


@pytest.mark.parametrize("body", [PNG_CARDIOMEGALY.read_bytes(), os.urandom(4_400_000),
                                  b"x", b"xy"], ids=["png", "4.4MB", "1 byte", "2 bytes"])
def test_a_base64_body_gives_chalices_bytes(body):
    # given the event API Gateway sends for a binary upload
    request = Request(proxy_event("POST", "/xray", body, "image/png"))
    # when its bytes are read
    read = upload_bytes(request)
    # then they are the upload's, as raw_body would give them
    assert read == body == request.raw_body


def test_lenient_base64_is_decoded_as_chalice_decodes_it():
    # given a body with line breaks (API Gateway never sends one; a hand-made event might)
    event = proxy_event("POST", "/xray", b"", "image/png")
    event.update(body=base64.encodebytes(b"\x89PNG" * 100).decode(), isBase64Encoded=True)
    request = Request(event)
    # then the line breaks are ignored, as base64.b64decode ignores them
    assert upload_bytes(request) == b"\x89PNG" * 100 == request.raw_body


def test_a_text_body_is_passed_through():
    # given an event whose body API Gateway did not encode (a text content type)
    event = proxy_event("POST", "/xray", b"", "text/plain")
    event.update(body="not an image", isBase64Encoded=False)
    # then its UTF-8 bytes come back
    assert upload_bytes(Request(event)) == b"not an image"
