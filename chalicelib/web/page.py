"""GET /: the upload page, one self-contained HTML file (page.html: inline CSS and JS, no build
step, nothing fetched from elsewhere, so it works offline) with the upload limit and the stage's
authentication (XRAY_AUTH) filled in.

The page itself needs no credentials (it holds no data, and a Cognito sign-in must be able to come
back to it); what it sends to the API depends on the mode: an API key typed into it, a Cognito ID
token got through the pool's hosted UI (authorization code + PKCE), or nothing at all under IAM,
where a browser cannot sign and the page says what to use instead.

The auth settings reach the page's script as a `<script type="application/json">` data block,
which browsers never execute, so the Content-Security-Policy still allows exactly the page's own
inline script and style (by hash), images from data: and blob: URLs (the previews and the
heatmap), and requests to this origin, plus the Cognito domain's token endpoint when sign-in is
set up."""
import base64
import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional

from chalicelib.settings import AUTH, COGNITO_CLIENT_ID, COGNITO_DOMAIN, AuthSettings

PAGE = Path(__file__).with_name("page.html")
# The ID token's header: what Chalice's CognitoUserPoolAuthorizer (and API Gateway's
# COGNITO_USER_POOLS authorizer without OAuth scopes, which wants the ID token) reads.
TOKEN_HEADER = "Authorization"
API_KEY_HEADER = "x-api-key"


def sign_in_origin(auth: AuthSettings) -> Optional[str]:
    """The hosted UI's origin when the page can sign people in (cognito with both the domain and
    the app client set), else None."""
    if auth.cognito and auth.cognito_domain and auth.cognito_client_id:
        return auth.cognito_domain
    return None


def auth_config(auth: AuthSettings) -> dict:
    """What the page's script needs to know about XRAY_AUTH (no secret: the app client has none)."""
    origin = sign_in_origin(auth)
    unset = [name for name, value in ((COGNITO_DOMAIN, auth.cognito_domain),
                                      (COGNITO_CLIENT_ID, auth.cognito_client_id)) if not value]
    return {"mechanisms": list(auth.mechanisms),
            "cognito": ({"domain": origin, "clientId": auth.cognito_client_id} if origin
                        else None),
            "cognitoUnset": unset if auth.cognito else [],
            "headers": {"token": TOKEN_HEADER, "apiKey": API_KEY_HEADER}}


def _json_for_html(value: dict) -> str:
    """JSON that cannot end its <script> element early nor open a comment in it."""
    return (json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")
            .replace(">", "\\u003e").replace("&", "\\u0026"))


@lru_cache(maxsize=8)
def render(max_bytes: int, auth: AuthSettings) -> str:
    html = PAGE.read_text(encoding="utf-8")
    return (html.replace("{{MAX_BYTES}}", str(max_bytes))
                .replace("{{MAX_SIZE}}", f"{max_bytes / 1e6:.1f} MB")
                .replace("{{AUTH_VAR}}", AUTH)
                .replace("{{AUTH_CONFIG}}", _json_for_html(auth_config(auth))))


def _hashes(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest())
                    .decode() + "'" for block in blocks)


@lru_cache(maxsize=8)
def headers(max_bytes: int, auth: AuthSettings) -> Dict[str, str]:
    html = render(max_bytes, auth)
    origin = sign_in_origin(auth)
    connect = "'self'" + (f" {origin}" if origin else "")
    policy = (f"default-src 'none'; script-src {_hashes(html, 'script')}; "
              f"style-src {_hashes(html, 'style')}; img-src 'self' data: blob:; "
              f"connect-src {connect}; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return {"Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": policy,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}
