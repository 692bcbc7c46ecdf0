"""GET / (the upload page) and POST /preview, in-process. The page in a real browser against
`chalice local` is test_page_browser.py."""
import base64
import hashlib
import io
import json
import re
from html.parser import HTMLParser

import pytest

from chalicelib.settings import DEFAULT_MAX_UPLOAD_BYTES
from tests.support.fixtures import DCM_J2K, DCM_MONO2, PNG_CARDIOMEGALY, PNG_TINY_RGB, fixture_id
from tests.support.serving import serving


@pytest.fixture(scope="module")
def page(demo_store):
    """The page as the dev stage serves it (XRAY_AUTH=none; test_page_auth.py: the others)."""
    with serving(demo_store, XRAY_AUTH="none") as client:
        response = client.http.get("/")
    assert response.status_code == 200
    return response


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_page_is_html_with_the_upload_limit_filled_in(page):
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    html = page.body.decode() if isinstance(page.body, bytes) else page.body
    assert "{{" not in html and f'data-max-bytes="{DEFAULT_MAX_UPLOAD_BYTES}"' in html
    assert "4.7 MB" in html


def test_the_page_needs_nothing_from_elsewhere(page):
    html = page.body if isinstance(page.body, str) else page.body.decode()
    tags = Elements()
    tags.feed(html)
    for tag, attrs in tags.tags:
        assert "src" not in attrs or tag == "img", tag  # no external script, frame, ...
        if tag == "link":  # no stylesheet or font is loaded from anywhere; no favicon either
            assert attrs == {"rel": "icon", "href": "data:,"}
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    # every API call is relative to the page, so it works under a stage path (/api/)
    calls = re.findall(r"""(?:post|api)\(\s*["']([^"']+)["']""", html)
    assert set(calls) >= {"preview", "model"} and not any(c.startswith("/") for c in calls)
    assert '"xray"' in html and "'/xray'" not in html and '"/xray"' not in html


def test_the_content_security_policy_allows_exactly_the_inline_code(page):
    html = page.body if isinstance(page.body, str) else page.body.decode()
    policy = page.headers["Content-Security-Policy"]
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        assert len(blocks) == 1  # (plus the auth settings' JSON data block, never executed)
        digest = base64.b64encode(hashlib.sha256(blocks[0].encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}';" in policy
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_the_page_links_the_apis_contract_relative_to_itself(page):
    html = page.body if isinstance(page.body, str) else page.body.decode()
    tags = Elements()
    tags.feed(html)
    assert [attrs for tag, attrs in tags.tags if tag == "a" and "contract" in attrs.values()] \
        == [{"id": "contract", "href": "openapi.json"}]


def test_every_control_is_labelled(page):
    html = page.body if isinstance(page.body, str) else page.body.decode()
    tags = Elements()
    tags.feed(html)
    labelled = {attrs.get("for") for tag, attrs in tags.tags if tag == "label"}
    controls = [(tag, attrs) for tag, attrs in tags.tags if tag in ("input", "select")]
    assert [attrs["id"] for _, attrs in controls] == ["api-key", "file", "want-heatmap",
                                                      "heatmap-label"]
    for tag, attrs in controls:
        assert attrs["id"] in labelled, attrs
    buttons = re.findall(r"<button[^>]*>([^<]+)</button>", html)
    assert buttons == ["Sign in", "Sign out", "Use key", "Forget key", "Classify"]
    assert 'role="alert"' in html and 'role="status"' in html
    assert "<caption>" in html and "<th scope=\"col\">" in html  # the chart's text alternative


def preview(client, body: bytes, content_type: str):
    response = client.http.post("/preview", headers={"Content-Type": content_type}, body=body)
    return response.status_code, json.loads(response.body)


@pytest.mark.parametrize("path", [DCM_J2K, DCM_MONO2, PNG_TINY_RGB], ids=fixture_id)
def test_preview_renders_the_decoded_pixels_small(client, path):
    from PIL import Image
    content_type = "application/dicom" if path.suffix == ".dcm" else "image/png"
    status, answer = preview(client, path.read_bytes(), content_type)
    assert status == 200
    png = answer["preview"]["png"]
    assert png.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1])))
    assert image.mode == "L" and max(image.size) <= 512
    assert (image.width, image.height) == (answer["preview"]["width"], answer["preview"]["height"])
    described = answer["image"]
    # the aspect ratio is kept
    assert abs(image.width / image.height - described["width"] / described["height"]) < 0.02
    assert len(png) < 400_000


def test_a_monochrome1_preview_shows_bone_bright(client):
    """The NEMA CR is MONOCHROME1: the preview must be inverted like the model's input, so the
    middle of the chest (mediastinum, spine) is brighter than the air outside the body."""
    import numpy as np
    from PIL import Image
    _, answer = preview(client, DCM_J2K.read_bytes(), "application/octet-stream")
    assert answer["image"]["photometric"] == "MONOCHROME1"
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(
        answer["preview"]["png"].split(",", 1)[1]))), dtype=float)
    h, w = pixels.shape
    centre = pixels[h // 3: 2 * h // 3, w // 2 - w // 20: w // 2 + w // 20].mean()
    corner = pixels[: h // 10, : w // 10].mean()
    assert centre > corner


def test_preview_refuses_what_classification_refuses(client):
    status, answer = preview(client, b"this is a text file", "application/octet-stream")
    assert status == 415 and "not a PNG, JPEG or DICOM" in answer["Message"]
    status, answer = preview(client, DCM_MONO2.read_bytes()[:100_000], "application/dicom")
    assert status == 400 and answer["Code"] == "InvalidImage"
    status, answer = preview(client, b"\0" * (DEFAULT_MAX_UPLOAD_BYTES + 1), "image/png")
    assert status == 413


def test_preview_never_loads_the_model(demo_store):
    with serving(demo_store) as fresh:
        status, _ = preview(fresh, PNG_CARDIOMEGALY.read_bytes(), "image/png")
        health = json.loads(fresh.http.get("/health").body)
    assert status == 200 and health["model"]["state"] == "not_loaded"
