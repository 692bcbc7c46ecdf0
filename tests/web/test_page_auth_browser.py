"""The upload page under each XRAY_AUTH mode in Debian's chromium, against a real `chalice local`
started with that mode (tests/support/serving.local_server).

`chalice local` enforces neither API keys nor IAM nor Cognito signatures, so these tests prove the
browser's side: what the page sends (every request is recorded with all its headers), where it
keeps the credentials (sessionStorage, never localStorage, cookies or the URL) and what it says
when API Gateway refuses them (those refusals are played by Playwright's request interception,
with the bodies API Gateway sends). Cognito's hosted UI is a small fake on loopback that checks
the PKCE proof the way Cognito does: SHA-256(code_verifier), base64url, equals the challenge sent
to /oauth2/authorize, for the same client and redirect_uri.
"""
import base64
import hashlib
import http.server
import json
import re
import secrets
import threading
import time
import urllib.parse

import pytest

from tests.support.browser import chromium, open_page
from tests.support.fixtures import DCM_MONO2, PNG_CARDIOMEGALY
from tests.support.serving import local_server, serving

pytestmark = [pytest.mark.server, pytest.mark.browser]

POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"
CLIENT = "fakeclient0123456789"
API_KEY = "k3y-" + "A1b2C3d4E5f6G7h8I9j0" * 2
VERIFIER_CHARS = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeHostedUI(http.server.BaseHTTPRequestHandler):
    """/oauth2/authorize, /oauth2/token and /logout of a Cognito hosted UI, for one app client."""
    state: dict  # set per server: grants, records, token lifetime

    def _send(self, status: int, body: bytes = b"", headers: dict = {}) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        state = self.server.state
        if url.path == "/oauth2/authorize":
            state["authorize"].append(query)
            ok = (query.get("response_type") == "code" and query.get("client_id") == CLIENT
                  and "openid" in query.get("scope", "").split()
                  and query.get("code_challenge_method") == "S256"
                  and query.get("code_challenge") and query.get("state")
                  and query.get("redirect_uri"))
            if not ok:
                return self._send(400, b"bad authorize request")
            code = secrets.token_urlsafe(16)
            state["grants"][code] = (query["code_challenge"], query["redirect_uri"])
            back = query["redirect_uri"] + "?" + urllib.parse.urlencode(
                {"code": code, "state": query["state"]})
            return self._send(302, headers={"Location": back})
        if url.path == "/logout":
            state["logout"].append(query)
            return self._send(302, headers={"Location": query["logout_uri"]})
        self._send(404)

    def do_POST(self):
        state = self.server.state
        origin = self.headers.get("Origin", "")
        cors = {"Access-Control-Allow-Origin": origin, "Content-Type": "application/json"}
        length = int(self.headers.get("Content-Length", "0"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        record = {"content_type": self.headers.get("Content-Type", ""), "form": form,
                  "origin": origin}
        state["token"].append(record)
        grant = state["grants"].pop(form.get("code", ""), None)  # a code works once
        verifier = form.get("code_verifier", "")
        record["verified"] = bool(
            self.path == "/oauth2/token" and grant is not None
            and record["content_type"].startswith("application/x-www-form-urlencoded")
            and form.get("grant_type") == "authorization_code"
            and form.get("client_id") == CLIENT and VERIFIER_CHARS.fullmatch(verifier)
            and b64url(hashlib.sha256(verifier.encode()).digest()) == grant[0]
            and form.get("redirect_uri") == grant[1])
        if not record["verified"]:
            return self._send(400, b'{"error":"invalid_grant"}', cors)
        now = int(time.time())
        claims = {"sub": "7d0c1a52-0000-4000-8000-000000000001", "aud": CLIENT,
                  "cognito:username": "alice", "email": "alice@example.org", "token_use": "id",
                  "iss": state["issuer"], "iat": now, "exp": now + state["lifetime"]}
        id_token = ".".join([b64url(json.dumps({"alg": "RS256", "kid": "fake"}).encode()),
                             b64url(json.dumps(claims).encode()), b64url(b"not-signed")])
        state["issued"].append(id_token)
        answer = {"id_token": id_token, "access_token": "fake-access-" + secrets.token_hex(8),
                  "refresh_token": "fake-refresh", "expires_in": 3600, "token_type": "Bearer"}
        self._send(200, json.dumps(answer).encode(), cors)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hosted_ui():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHostedUI)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    server.state = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, origin
    server.shutdown()
    server.server_close()


@pytest.fixture
def ui(hosted_ui):
    """The fake hosted UI with empty records, issuing one-hour tokens."""
    server, origin = hosted_ui
    server.state.clear()
    server.state.update(authorize=[], token=[], logout=[], grants={}, issued=[],
                        lifetime=3600, issuer=origin)
    return server.state


def start(tmp_path_factory, name: str, **env: str):
    log_path = tmp_path_factory.mktemp(f"chalice-local-{name}") / "chalice-local.log"
    return local_server(log_path, **env)


@pytest.fixture(scope="module")
def api_key_server(tmp_path_factory):
    with start(tmp_path_factory, "api-key", XRAY_AUTH="api_key") as (base, _):
        yield base


@pytest.fixture(scope="module")
def cognito_server(tmp_path_factory, hosted_ui):
    _, origin = hosted_ui
    with start(tmp_path_factory, "cognito", XRAY_AUTH="cognito",
               XRAY_COGNITO_USER_POOL_ARNS=POOL, XRAY_COGNITO_DOMAIN=origin,
               XRAY_COGNITO_CLIENT_ID=CLIENT) as (base, _):
        yield base


@pytest.fixture(scope="module")
def iam_server(tmp_path_factory):
    with start(tmp_path_factory, "iam", XRAY_AUTH="iam") as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def context(browser):
    """Fresh storage and cookies for each test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    yield context
    context.close()


def api_calls(page, server: str) -> list:
    """(method, URL, all headers) of every request to the API (loads of the page excluded)."""
    return [(r.method, r.url, r.all_headers()) for r in page.requests
            if r.url.startswith(server + "/") and r.resource_type != "document"]


def storage(page) -> dict:
    return page.evaluate("""() => ({session: Object.assign({}, sessionStorage),
                                    local: Object.assign({}, localStorage),
                                    cookie: document.cookie, url: location.href})""")


def classify_png(page) -> None:
    page.set_input_files("#file", str(PNG_CARDIOMEGALY))
    page.wait_for_selector("#preview-figure", state="visible")
    page.click("#classify")
    page.wait_for_selector("#results", state="visible", timeout=120_000)


def preview_and_classify_dicom(page) -> None:
    page.set_input_files("#file", files=[{"name": "chest.dcm", "mimeType": "",
                                          "buffer": DCM_MONO2.read_bytes()}])
    page.wait_for_selector("#preview-figure", state="visible", timeout=60_000)
    page.click("#classify")
    page.wait_for_selector("#results", state="visible", timeout=120_000)


def model_loaded(page) -> None:
    page.wait_for_selector("#heatmap-label option[value='Cardiomegaly']", state="attached")


def enter_key(page, key: str = API_KEY) -> None:
    page.fill("#api-key", key)
    page.click("#key-use")


# ---- api_key ----------------------------------------------------------------------------------

def test_given_api_key_mode_when_a_key_is_entered_then_every_call_sends_it_from_session_storage(
        context, api_key_server):
    server = api_key_server
    page = open_page(context, server + "/")
    page.wait_for_selector("#auth-api-key", state="visible")
    assert page.get_attribute("#api-key", "type") == "password"
    assert page.is_disabled("#file") and page.is_disabled("#classify")
    assert "enter the API key" in page.inner_text("#auth-needed")
    assert api_calls(page, server) == []  # nothing is asked of the API without the key

    enter_key(page)
    model_loaded(page)
    assert page.input_value("#api-key") == ""  # not left in the field
    classify_png(page)
    preview_and_classify_dicom(page)

    calls = api_calls(page, server)
    assert [(method, url) for method, url, _ in calls] == [
        ("GET", f"{server}/model"), ("POST", f"{server}/xray"), ("POST", f"{server}/preview"),
        ("POST", f"{server}/xray")]
    assert all(headers.get("x-api-key") == API_KEY for _, _, headers in calls)
    assert all(API_KEY not in r.url for r in page.requests)
    held = storage(page)
    assert held["session"] == {"xray.apiKey": API_KEY}
    assert held["local"] == {} and held["cookie"] == "" and context.cookies() == []
    assert API_KEY not in held["url"]
    assert page.console_errors == []

    page.click("#key-forget")
    assert storage(page)["session"] == {}
    assert page.is_disabled("#file") and page.is_disabled("#classify")
    assert "No key set" in page.inner_text("#key-status")


@pytest.mark.parametrize("refusal", [{"message": "Forbidden"},
                                     {"Code": "Forbidden", "Message": "Invalid API key"}],
                         ids=["api-gateway-default", "gateway-response"])
def test_given_api_key_mode_when_the_gateway_refuses_the_key_then_the_page_says_so_and_asks_again(
        context, api_key_server, refusal):
    server = api_key_server
    page = open_page(context, server + "/")
    page.route(server + "/xray", lambda route: route.fulfill(
        status=403, content_type="application/json", body=json.dumps(refusal)))
    enter_key(page, "a-wrong-key")
    model_loaded(page)
    page.set_input_files("#file", str(PNG_CARDIOMEGALY))
    page.wait_for_selector("#preview-figure", state="visible")
    page.click("#classify")
    page.wait_for_selector("#error", state="visible")
    text = page.inner_text("#error")
    assert "The API key was refused" in text
    assert refusal.get("Message", refusal.get("message")) in text
    assert storage(page)["session"] == {}  # the refused key is dropped ...
    assert "enter the API key" in page.inner_text("#auth-needed")  # ... and asked for again
    assert page.is_disabled("#file") and page.is_disabled("#classify")


# ---- cognito ----------------------------------------------------------------------------------

def sign_in(page, server: str) -> None:
    page.wait_for_selector("#sign-in", state="visible")
    page.click("#sign-in")
    page.wait_for_selector("#sign-out", state="visible")


def test_given_cognito_mode_when_signing_in_then_pkce_completes_and_the_id_token_is_sent(
        context, cognito_server, ui):
    server = cognito_server
    page = open_page(context, server + "/")
    page.wait_for_selector("#sign-in", state="visible")
    assert page.is_disabled("#file") and "sign in" in page.inner_text("#auth-needed")
    assert api_calls(page, server) == []

    sign_in(page, server)
    # the hosted UI got a code request with an S256 challenge, and the proof matched it
    [authorize] = ui["authorize"]
    assert authorize["redirect_uri"] == server + "/" and authorize["scope"] == "openid"
    [exchange] = ui["token"]
    assert exchange["verified"] is True and exchange["origin"] == server
    assert exchange["form"]["code_verifier"] not in json.dumps(authorize)
    [id_token] = ui["issued"]
    assert page.url == server + "/"  # the code is gone from the address bar
    held = storage(page)
    assert held["session"] == {"xray.idToken": id_token}  # only the ID token, only here
    assert held["local"] == {} and held["cookie"] == "" and context.cookies(server) == []
    assert "alice@example.org" in page.inner_text("#cognito-status")

    model_loaded(page)
    classify_png(page)
    calls = api_calls(page, server)
    assert [(method, url) for method, url, _ in calls] == [
        ("GET", f"{server}/model"), ("POST", f"{server}/xray")]
    # the raw ID token, as Chalice's CognitoUserPoolAuthorizer (header Authorization) takes it
    assert all(headers.get("authorization") == id_token for _, _, headers in calls)
    assert page.console_errors == []

    page.click("#sign-out")
    page.wait_for_selector("#sign-in", state="visible")
    assert ui["logout"] == [{"client_id": CLIENT, "logout_uri": server + "/"}]
    assert storage(page)["session"] == {} and page.is_disabled("#file")


def test_given_cognito_mode_when_a_code_arrives_with_a_foreign_state_then_it_is_not_exchanged(
        context, cognito_server, ui):
    server = cognito_server
    page = open_page(context, server + "/?code=stolen-code&state=forged")
    page.wait_for_selector("#error", state="visible")
    assert "not started from this tab" in page.inner_text("#error")
    assert ui["token"] == [] and page.url == server + "/"
    assert storage(page)["session"] == {} and page.is_visible("#sign-in")


def test_given_cognito_mode_when_the_api_answers_401_then_the_page_asks_to_sign_in_again(
        context, cognito_server, ui):
    server = cognito_server
    page = open_page(context, server + "/")
    sign_in(page, server)
    model_loaded(page)
    page.route(server + "/xray", lambda route: route.fulfill(
        status=401, content_type="application/json", body='{"message":"Unauthorized"}'))
    page.set_input_files("#file", str(PNG_CARDIOMEGALY))
    page.wait_for_selector("#preview-figure", state="visible")
    page.click("#classify")
    page.wait_for_selector("#error", state="visible")
    assert "sign in again" in page.inner_text("#error")
    assert storage(page)["session"] == {}
    assert page.is_visible("#sign-in") and page.is_disabled("#file")


def test_given_cognito_mode_when_the_token_has_expired_then_it_is_not_used(context,
                                                                           cognito_server, ui):
    server = cognito_server
    ui["lifetime"] = -60
    page = open_page(context, server + "/")
    page.click("#sign-in")
    page.wait_for_selector("#cognito-status:has-text('expired')")
    assert [r["verified"] for r in ui["token"]] == [True]
    assert page.is_visible("#sign-in") and page.is_disabled("#file")
    assert storage(page)["session"] == {} and api_calls(page, server) == []


def test_given_cognito_without_a_hosted_ui_when_opened_then_it_names_the_settings(context,
                                                                                  demo_store):
    """No `chalice local` needed: the in-process app's own answer, served to chromium through
    request interception (every other request the page makes is recorded and refused)."""
    with serving(demo_store, XRAY_AUTH="cognito", XRAY_COGNITO_USER_POOL_ARNS=POOL) as client:
        response = client.http.get("/")
    origin = "http://xray.test"
    others = []

    def answer(route):
        if route.request.url == origin + "/":
            route.fulfill(status=200, headers=dict(response.headers), body=response.body)
        else:
            others.append(route.request.url)
            route.abort()
    context.route("**/*", answer)
    page = open_page(context, origin + "/")
    page.wait_for_selector("#cognito-unset", state="visible")
    text = page.inner_text("#cognito-unset")
    assert "XRAY_COGNITO_DOMAIN and XRAY_COGNITO_CLIENT_ID" in text
    assert not page.is_visible("#sign-in") and page.is_disabled("#file")
    assert others == [] and page.console_errors == []


# ---- iam --------------------------------------------------------------------------------------

def test_given_iam_mode_when_opened_then_it_explains_signing_and_sends_nothing(context,
                                                                               iam_server):
    server = iam_server
    page = open_page(context, server + "/")
    page.wait_for_selector("#auth-iam", state="visible")
    text = page.inner_text("#auth-iam")
    assert "a web browser cannot sign them" in text and "XRAY_AUTH=cognito" in text
    curl = page.inner_text("#iam-curl")
    assert "--aws-sigv4" in curl and curl.endswith(f"--data-binary @chest.png {server}/xray")
    assert "execute-api" in page.inner_text("#iam-awscurl")
    assert page.is_disabled("#file") and page.is_disabled("#classify")
    # even a file forced into the disabled input is not sent
    page.set_input_files("#file", str(PNG_CARDIOMEGALY))
    page.wait_for_timeout(500)
    assert not page.is_visible("#preview-figure")
    assert api_calls(page, server) == [] and page.console_errors == []
