"""The upload page under each XRAY_AUTH mode, in-process: what it is told about the mode, and a
Content-Security-Policy that stays exact in every one (test_page_auth_browser.py: the same page
in chromium against `chalice local`)."""
import base64
import hashlib
import json
import re

import pytest

from chalicelib.settings import AUTH_CHOICES, COGNITO_CLIENT_ID, COGNITO_DOMAIN, AuthSettings
from chalicelib.web import page as page_module
from tests.support.serving import run_isolated, serving

POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"
DOMAIN = "https://myapp.auth.eu-west-1.amazoncognito.com"
CLIENT = "4example5clientid6noSecret"


def stage_env(mode: str, **extra: str) -> dict:
    env = {"XRAY_AUTH": mode}
    if "cognito" in mode:
        env.update(XRAY_COGNITO_USER_POOL_ARNS=POOL, XRAY_COGNITO_DOMAIN=DOMAIN,
                   XRAY_COGNITO_CLIENT_ID=CLIENT)
    env.update(extra)
    return env


def served(demo_store, **env: str):
    with serving(demo_store, **env) as client:
        response = client.http.get("/")
    assert response.status_code == 200
    body = response.body.decode() if isinstance(response.body, bytes) else response.body
    return body, response.headers


def directives(policy: str) -> dict:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in policy.split(";")) if d}


def sha256_source(block: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"


def config_of(html: str) -> dict:
    blocks = re.findall(r'<script type="application/json" id="auth-config">(.*?)</script>', html,
                        flags=re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def assert_policy_allows_exactly_the_inline_code(html: str, policy: dict) -> None:
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, flags=re.S)
    # one executable script and one stylesheet, each allowed by its hash and nothing else
    assert len(scripts) == 1 and len(styles) == 1
    assert policy["script-src"] == [sha256_source(scripts[0])]
    assert policy["style-src"] == [sha256_source(styles[0])]
    # every other <script> is the JSON data block, which no browser executes
    assert len(re.findall(r"<script\b", html)) == 2
    assert policy["default-src"] == ["'none'"] and policy["img-src"] == ["'self'", "data:",
                                                                         "blob:"]
    assert policy["base-uri"] == ["'none'"] and policy["form-action"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "unsafe-inline" not in " ".join(sum(policy.values(), []))


@pytest.mark.parametrize("mode", AUTH_CHOICES)
def test_given_each_auth_mode_when_the_page_is_served_then_the_csp_matches_its_code(demo_store,
                                                                                   mode):
    html, headers = served(demo_store, **stage_env(mode))
    policy = directives(headers["Content-Security-Policy"])
    assert_policy_allows_exactly_the_inline_code(html, policy)
    config = config_of(html)
    assert config["mechanisms"] == ([] if mode == "none" else mode.split("+"))
    if "cognito" in mode:
        # the token request goes to the hosted UI's origin: that one, and only it, is added
        assert policy["connect-src"] == ["'self'", DOMAIN]
        assert config["cognito"] == {"domain": DOMAIN, "clientId": CLIENT}
    else:
        assert policy["connect-src"] == ["'self'"]
        assert config["cognito"] is None
    assert config["headers"] == {"token": "Authorization", "apiKey": "x-api-key"}
    assert "{{" not in html


@pytest.mark.parametrize("unset", [(COGNITO_DOMAIN,), (COGNITO_CLIENT_ID,),
                                   (COGNITO_DOMAIN, COGNITO_CLIENT_ID)])
def test_given_cognito_without_its_hosted_ui_when_served_then_the_page_names_what_to_set(
        demo_store, unset):
    html, headers = served(demo_store, **stage_env("cognito", **{name: "" for name in unset}))
    policy = directives(headers["Content-Security-Policy"])
    assert_policy_allows_exactly_the_inline_code(html, policy)
    assert policy["connect-src"] == ["'self'"]  # no sign-in, so no other origin
    config = config_of(html)
    assert config["cognito"] is None and config["cognitoUnset"] == list(unset)


def test_given_a_custom_domain_with_a_port_when_rendered_then_connect_src_names_that_origin():
    auth = AuthSettings.from_env(stage_env("cognito+api_key",
                                           XRAY_COGNITO_DOMAIN="https://login.example.org:8443/"))
    policy = directives(page_module.headers(1000, auth)["Content-Security-Policy"])
    assert policy["connect-src"] == ["'self'", "https://login.example.org:8443"]
    assert config_of(page_module.render(1000, auth))["mechanisms"] == ["cognito", "api_key"]


def test_given_markup_in_the_client_id_when_rendered_then_it_stays_data(demo_store):
    hostile = '</script><script>alert(1)</script><!--'
    auth = AuthSettings.from_env(stage_env("cognito", XRAY_COGNITO_CLIENT_ID=hostile))
    html = page_module.render(1000, auth)
    assert hostile not in html
    assert config_of(html)["cognito"]["clientId"] == hostile
    policy = directives(page_module.headers(1000, auth)["Content-Security-Policy"])
    assert_policy_allows_exactly_the_inline_code(html, policy)


ROUTE_AUTH = """
import json, app
route = app.app.routes["/"]["GET"]
print(json.dumps({"authorizer": route.authorizer is not None,
                  "api_key_required": bool(route.api_key_required)}))
"""


@pytest.mark.parametrize("mode", ["iam", "cognito", "api_key", "cognito+api_key"])
def test_given_any_auth_mode_when_app_is_imported_then_the_page_itself_needs_no_credentials(
        mode):
    """The page holds no data, and the hosted UI's redirect back to it carries no token."""
    answer = json.loads(run_isolated(ROUTE_AUTH, **stage_env(mode)))
    assert answer == {"authorizer": False, "api_key_required": False}
