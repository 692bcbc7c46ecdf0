"""GET /: the upload page, one self-contained HTML file (page.html: inline CSS and JS, no build
step, nothing fetched from elsewhere, so it works offline) with the upload limits and the stage's
authentication (XRAY_AUTH) filled in.

A file up to the synchronous limit goes to POST /xray as it is. On a stage with a jobs bucket a
larger one (up to the job limit) goes the jobs way: POST /xray/jobs, the presigned S3 POST (with
upload progress), then GET /xray/jobs/{job_id} until it is final; its result is shown as a
synchronous answer is.

The page itself needs no credentials (it holds no data, and a Cognito sign-in must be able to come
back to it); what it sends to the API depends on the mode: an API key typed into it, a Cognito ID
token got through the pool's hosted UI (authorization code + PKCE), or nothing at all under IAM,
where a browser cannot sign and the page says what to use instead.

The auth settings reach the page's script as a `<script type="application/json">` data block,
which browsers never execute, so the Content-Security-Policy still allows exactly the page's own
inline script and style (by hash), images from data: and blob: URLs (the previews and the
heatmap), and requests to this origin, plus the Cognito domain's token endpoint when sign-in is
set up, and the jobs bucket's upload origin when the stage takes jobs (the page learns the
upload URL only once a job exists, so the policy names the origin the presigner uses)."""
import base64
import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional

from chalicelib.settings import AUTH, COGNITO_CLIENT_ID, COGNITO_DOMAIN, AuthSettings, JobSettings

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


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _days(count: int) -> str:
    return f"{count} day" + ("" if count == 1 else "s")


def job_limit(max_bytes: int, jobs: JobSettings) -> int:
    """The largest file the page sends the jobs way; 0 when it sends none (no jobs bucket, or a
    job limit no larger than the synchronous one)."""
    return jobs.max_bytes if jobs.enabled and jobs.max_bytes > max_bytes else 0


def size_help(max_bytes: int, jobs: JobSettings) -> str:
    """What the page says about sizes and what is kept of an upload (plain text)."""
    larger = job_limit(max_bytes, jobs)
    if not larger:
        return (f"PNG, JPEG or DICOM, at most {_megabytes(max_bytes)}. The image is sent to "
                "this service only to be classified; it is not stored.")
    kept = (f"kept for {_days(jobs.keep_uploads_days)}" if jobs.keep_uploads_days
            else "deleted once classified")
    return (f"PNG, JPEG or DICOM, at most {_megabytes(larger)}. An image of up to "
            f"{_megabytes(max_bytes)} is sent to this service only to be classified; it is not "
            "stored. A larger one is uploaded to this service's private storage first (its "
            f"progress is shown), classified there and {kept}; its findings are kept for "
            f"{_days(jobs.result_days)}.")


@lru_cache(maxsize=8)
def render(max_bytes: int, auth: AuthSettings, jobs: JobSettings = JobSettings()) -> str:
    html = PAGE.read_text(encoding="utf-8")
    return (html.replace("{{MAX_BYTES}}", str(max_bytes))
                .replace("{{JOB_MAX_BYTES}}", str(job_limit(max_bytes, jobs)))
                .replace("{{SIZE_HELP}}", size_help(max_bytes, jobs))
                .replace("{{AUTH_VAR}}", AUTH)
                .replace("{{AUTH_CONFIG}}", _json_for_html(auth_config(auth))))


def _hashes(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest())
                    .decode() + "'" for block in blocks)


@lru_cache(maxsize=8)
def headers(max_bytes: int, auth: AuthSettings, jobs: JobSettings = JobSettings(),
            upload_origin: Optional[str] = None) -> Dict[str, str]:
    """upload_origin: where the jobs' uploads go (chalicelib/jobs/clients.upload_origin), for a
    stage whose page sends files the jobs way."""
    html = render(max_bytes, auth, jobs)
    jobs_way = bool(job_limit(max_bytes, jobs))
    if jobs_way and not upload_origin:
        raise ValueError("a page that uploads jobs needs the jobs bucket's upload origin")
    sources = ["'self'", sign_in_origin(auth), upload_origin if jobs_way else None]
    connect = " ".join(source for source in sources if source)
    policy = (f"default-src 'none'; script-src {_hashes(html, 'script')}; "
              f"style-src {_hashes(html, 'style')}; img-src 'self' data: blob:; "
              f"connect-src {connect}; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return {"Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": policy,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}
