"""CORS with an allowlist of origins (XRAY_CORS_ORIGINS), answered by the app itself.

Why not Chalice's `cors=CORSConfig(...)`: it holds one fixed origin, and for a cors route Chalice
generates a MOCK OPTIONS integration in API Gateway that can only answer that one origin. So no
route uses `cors=`; instead app.py declares its own OPTIONS routes (API Gateway then proxies
preflights to the Lambda like any other request, and `chalice local` hands them to the app too,
since it only fakes preflights for paths without a user OPTIONS route), and the http middleware
adds the headers below to every answer, errors included.

Pure Python on purpose: app.py imports it at deploy time.
"""
from typing import Dict, Optional, Sequence

ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
# Content-Type is not CORS-safelisted for image/png or application/dicom, so uploads preflight.
# The rest are the credentials a stage may ask for (XRAY_AUTH): a Cognito token, an API key, and
# what a SigV4-signing SDK in another site's page sends.
ALLOWED_HEADERS = ("Content-Type, Accept, Authorization, X-Api-Key, X-Amz-Date, "
                   "X-Amz-Security-Token, X-Amz-Content-Sha256")
MAX_AGE_SECONDS = "600"  # browsers cap this anyway (Chromium: 2 hours)


def allowed_origin(origin: Optional[str], allowlist: Sequence[str]) -> Optional[str]:
    """The value for Access-Control-Allow-Origin, or None when this origin gets nothing."""
    if not origin:
        return None
    if "*" in allowlist:
        return "*"
    return origin if origin.lower() in allowlist else None


def response_headers(origin: Optional[str], allowlist: Sequence[str]) -> Dict[str, str]:
    """Headers for an ordinary (non-preflight) answer. `Vary: Origin` whenever the answer could
    differ by origin, so a cache never serves one origin's answer to another."""
    headers = {"Vary": "Origin"} if allowlist and "*" not in allowlist else {}
    allowed = allowed_origin(origin, allowlist)
    if allowed is not None:
        headers["Access-Control-Allow-Origin"] = allowed
    return headers


def preflight_headers(origin: Optional[str], allowlist: Sequence[str]) -> Optional[Dict[str, str]]:
    """Headers that let a browser go on with the real request, or None: not an allowed origin."""
    allowed = allowed_origin(origin, allowlist)
    if allowed is None:
        return None
    return {**response_headers(origin, allowlist),
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": MAX_AGE_SECONDS}
