"""The upload page end to end: Debian's chromium, headless, driven by Playwright, against a real
`chalice local` started the way the README says (scripts/serve) and stopped by its PID.

What the page shows is compared with what the API answers for the same bytes. A screenshot of
the results view is saved to test-artifacts/page-results.png (git-ignored). A second web origin
(a tiny local server) checks CORS in the browser itself: allowed origin, refused origin.
"""
import base64
import http.server
import json
import threading
import urllib.error
import urllib.request

import pytest

from tests.support.browser import open_page
from tests.support.fixtures import DCM_J2K, PNG_CARDIOMEGALY, PNG_TINY_RGB, REPO
from tests.support.serving import chalice_local, local_server

pytestmark = [pytest.mark.server, pytest.mark.browser]

ARTIFACTS = REPO / "test-artifacts"


class OtherSite(http.server.BaseHTTPRequestHandler):
    """Some other web app's origin: a blank page from which scripts call the API."""

    def do_GET(self):
        body = b"<!doctype html><title>another web app</title><p>other origin</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def other_sites():
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), OtherSite) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    allowed, refused = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
    yield allowed, refused
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def server(other_sites, tmp_path_factory):
    allowed, _ = other_sites
    log_path = tmp_path_factory.mktemp("chalice-local") / "chalice-local.log"
    # XRAY_AUTH=none: the page as on the dev stage (test_page_auth_browser.py: the other modes)
    with local_server(log_path, XRAY_CORS_ORIGINS=allowed, XRAY_AUTH="none") as (base, _):
        try:  # the page needs the model: say why not, rather than time out in the browser
            urllib.request.urlopen(f"{base}/model", timeout=30)
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"chalice local serves no model: {error.read()[:500]!r}")
        yield base


@pytest.fixture
def page(browser, server):
    page = open_page(browser, server + "/")
    # the labels come from GET /model (selectors, not wait_for_function: the page's CSP forbids
    # the eval that Playwright would use)
    page.wait_for_selector("#heatmap-label option[value='Cardiomegaly']", state="attached")
    yield page
    page.close()


def api(server: str, path: str, body: bytes, content_type: str) -> dict:
    request = urllib.request.Request(f"{server}{path}", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def shown_findings(page) -> list:
    return page.eval_on_selector_all("#findings tbody tr", """rows => rows.map(row => ({
        label: row.dataset.label,
        probability: Number(row.dataset.probability),
        text: row.querySelector('.probability').textContent,
        positive: row.classList.contains('positive'),
        badge: row.querySelector('.badge') !== null,
        fill: row.querySelector('.fill').style.width,
        mark: row.querySelector('.threshold').style.left,
        visible: row.querySelector('.fill').getBoundingClientRect().width,
    }))""")


def assert_page_shows(page, answer: dict) -> None:
    rows = shown_findings(page)
    assert [(r["label"], r["probability"]) for r in rows] == [
        (f["label"], f["probability"]) for f in answer["findings"]]
    for row, finding in zip(rows, answer["findings"]):
        above = finding["probability"] >= finding["threshold"]
        assert row["text"] == f"{finding['probability'] * 100:.1f}%"
        assert row["positive"] is above and row["badge"] is above
        assert float(row["mark"].rstrip("%")) == pytest.approx(finding["threshold"] * 100)
        assert float(row["fill"].rstrip("%")) == pytest.approx(finding["probability"] * 100)
    assert rows[0]["visible"] > 0  # the bars are drawn, not just present
    top = answer["findings"][0]
    summary = page.inner_text("#summary")
    assert f"Top finding: {top['label']} ({top['probability'] * 100:.1f}%)" in summary
    for label in answer["positive"]:
        assert label in summary
    model = answer["model"]
    assert model["name"] in page.inner_text("#model-line")
    assert page.is_visible("#demo-warning")
    assert model["warning"] in page.inner_text("#demo-warning")
    timings = page.inner_text("#timings")
    assert "Inference" in timings and "Round trip" in timings


def tab_to(page, element_id: str, limit: int = 15) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} cannot be reached with the Tab key")


def open_chooser_by_keyboard(page):
    """Space on the focused file input opens the chooser. On a loaded machine Chromium has been
    seen to drop the first key press before the dialog hook is live, so press it again (still
    the keyboard alone; a page where Space never opens it fails after three tries)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    for attempt in range(3):
        try:
            with page.expect_file_chooser(timeout=10_000) as chooser:
                page.keyboard.press("Space")
            return chooser.value
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            assert page.evaluate("document.activeElement.id") == "file"


def test_a_png_by_keyboard_alone_shows_the_apis_findings(page, server):
    page.focus("body")
    tab_to(page, "file")
    chooser = open_chooser_by_keyboard(page)
    chooser.set_files(str(PNG_CARDIOMEGALY))
    page.wait_for_selector("#preview-figure", state="visible")
    assert page.eval_on_selector("#preview", "img => img.naturalWidth") > 0
    tab_to(page, "classify")
    page.keyboard.press("Enter")
    page.wait_for_selector("#results", state="visible", timeout=120_000)

    answer = api(server, "/xray", PNG_CARDIOMEGALY.read_bytes(), "image/png")
    assert_page_shows(page, answer)
    assert not page.is_visible("#heatmap-figure")
    posts = [r for r in page.requests if r.method == "POST"]
    assert [(r.url, r.headers["content-type"]) for r in posts] == [
        (f"{server}/xray", "image/png")]  # the raw file (a form would be multipart/form-data)
    # nothing from elsewhere: this server, or the page's own blob:/data: images
    assert all(r.url.startswith((server + "/", "blob:", "data:")) for r in page.requests)
    assert {r.url for r in page.requests if r.url.startswith("http")} == {
        f"{server}/", f"{server}/model", f"{server}/xray"}
    assert page.console_errors == []


def test_a_dicom_is_previewed_classified_and_explained(page, server):
    body = DCM_J2K.read_bytes()
    # browsers usually give .dcm files no type at all: the page must still say DICOM
    page.set_input_files("#file", files=[{"name": "chest.dcm", "mimeType": "", "buffer": body}])
    page.wait_for_selector("#preview-figure", state="visible", timeout=60_000)
    assert "DICOM" in page.inner_text("#preview-caption")
    assert page.eval_on_selector("#preview", "img => img.naturalWidth") > 0
    page.click("#classify")
    page.wait_for_selector("#results", state="visible", timeout=120_000)
    assert_page_shows(page, api(server, "/xray", body, "application/dicom"))

    page.check("#want-heatmap")
    page.click("#classify")
    page.wait_for_selector("#heatmap-figure", state="visible", timeout=120_000)
    page.wait_for_selector("#results", state="visible")
    answer = api(server, "/xray?heatmap=top", body, "application/dicom")
    assert_page_shows(page, answer)
    heatmap = page.eval_on_selector("#heatmap", "img => ({src: img.src, alt: img.alt, "
                                    "width: img.naturalWidth, height: img.naturalHeight, "
                                    "shown: img.getBoundingClientRect().width})")
    assert heatmap["src"] == answer["heatmap"]["png"]
    assert (heatmap["width"], heatmap["height"]) == (224, 224) and heatmap["shown"] > 100
    top = answer["findings"][0]["label"]
    assert answer["heatmap"]["label"] == top and f"heatmap for {top}" in heatmap["alt"]
    assert top in page.inner_text("#heatmap-caption")

    page.select_option("#heatmap-label", "Cardiomegaly")
    page.click("#classify")
    page.wait_for_selector("#heatmap[alt*='Cardiomegaly']", timeout=120_000)
    answer = api(server, "/xray?heatmap=Cardiomegaly", body, "application/dicom")
    assert page.eval_on_selector("#heatmap", "img => img.src") == answer["heatmap"]["png"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-results.png"), full_page=True)

    sent = [(r.url, r.headers["content-type"]) for r in page.requests if r.method == "POST"]
    assert sent == [(f"{server}/preview", "application/dicom"),
                    (f"{server}/xray", "application/dicom"),
                    (f"{server}/xray?heatmap=top", "application/dicom"),
                    (f"{server}/xray?heatmap=Cardiomegaly", "application/dicom")]
    assert page.console_errors == []


def error_for(page, name: str, mime: str, body: bytes) -> str:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": body}])
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    text = page.inner_text("#error")
    assert page.is_disabled("#classify")
    return text


def test_the_page_links_the_apis_contract(page, server):
    href = page.eval_on_selector("#contract", "link => link.href")
    assert href == f"{server}/openapi.json"
    with urllib.request.urlopen(href, timeout=30) as response:
        document = json.loads(response.read())
    assert document["openapi"].startswith("3.1.") and "/xray" in document["paths"]
    assert page.console_errors == []


def test_a_text_file_is_refused_in_plain_words(page):
    text = error_for(page, "notes.txt", "text/plain", b"Patient notes, not an image.")
    assert "\u201cnotes.txt\u201d is not an image" in text and "PNG, JPEG or DICOM" in text
    assert not [r for r in page.requests if r.method == "POST"]  # refused before sending


def test_a_non_image_named_png_is_refused_by_the_server_in_plain_words(page, server):
    text = error_for(page, "scan.png", "image/png", b"Patient notes, not an image.")
    assert "This file is not a chest X-ray image the service can read" in text
    assert "not a PNG, JPEG or DICOM" in text  # the server's details follow
    assert [r.url for r in page.requests if r.method == "POST"] == [f"{server}/preview"]


def test_without_a_jobs_bucket_a_file_over_the_limit_is_refused_before_upload(browser,
                                                                             tmp_path):
    """scripts/serve always has a jobs bucket (there such a file goes the jobs way:
    test_page_jobs_browser.py), and so does every stage of .chalice/config.json; plain
    `chalice local` of a stage no config defines has none."""
    with chalice_local(tmp_path / "chalice-local.log", "--stage", "local",
                       XRAY_AUTH="none") as (base, _):
        page = open_page(browser, base + "/")
        try:
            assert page.get_attribute("body", "data-job-max-bytes") == "0"
            text = error_for(page, "huge.png", "image/png",
                             b"\x89PNG\r\n\x1a\n" + b"\0" * 5_000_000)
            assert "is too large" in text and "the limit is 4.7 MB" in text
            assert not [r for r in page.requests if r.method == "POST"]
        finally:
            page.close()


def test_an_image_too_small_to_classify_gets_the_servers_reason(page):
    import io

    from PIL import Image
    out = io.BytesIO()
    Image.new("L", (20, 20), 128).save(out, "PNG")
    page.set_input_files("#file", files=[{"name": "tiny.png", "mimeType": "image/png",
                                          "buffer": out.getvalue()}])
    page.wait_for_selector("#preview-figure", state="visible")
    page.click("#classify")
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    text = page.inner_text("#error")
    assert "no single radiograph that can be classified" in text and "at least 32" in text
    assert not page.is_visible("#results")


FETCH_FROM_OTHER_SITE = """async ([url, b64]) => {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    try {
        const response = await fetch(url, {method: "POST", body: bytes,
                                           headers: {"Content-Type": "image/png"}});
        const answer = await response.json();
        return {ok: true, status: response.status, top: answer.findings[0].label};
    } catch (error) {
        return {ok: false, error: String(error)};
    }
}"""


def test_cors_in_the_browser_allowed_origin_works_other_origin_is_blocked(browser, server,
                                                                        other_sites):
    allowed, refused = other_sites
    png = base64.b64encode(PNG_TINY_RGB.read_bytes()).decode()
    expected = api(server, "/xray", PNG_TINY_RGB.read_bytes(), "image/png")
    page = browser.new_page()
    try:
        page.goto(allowed + "/")
        # image/png is not a "simple" content type: the browser preflights, then posts
        result = page.evaluate(FETCH_FROM_OTHER_SITE, [f"{server}/xray", png])
        assert result == {"ok": True, "status": 200, "top": expected["findings"][0]["label"]}
        page.goto(refused + "/")
        result = page.evaluate(FETCH_FROM_OTHER_SITE, [f"{server}/xray", png])
        assert result["ok"] is False and "Failed to fetch" in result["error"]
        health = page.evaluate("url => fetch(url).then(r => 'read', e => String(e))",
                               f"{server}/health")
        assert "Failed to fetch" in health  # no preflight, but the answer is withheld
    finally:
        page.close()


def test_chalice_local_answers_preflights_itself(server, other_sites):
    allowed, refused = other_sites

    def options(origin):
        request = urllib.request.Request(f"{server}/xray", method="OPTIONS", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.headers

    status, headers = options(allowed)
    assert status == 204 and headers["Access-Control-Allow-Origin"] == allowed
    assert "POST" in headers["Access-Control-Allow-Methods"]
    status, headers = options(refused)
    assert status == 403 and headers["Access-Control-Allow-Origin"] is None
