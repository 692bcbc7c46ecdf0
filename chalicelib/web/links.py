"""The API's own base URL as the client sees it, for the status links of jobs: XRAY_PUBLIC_URL
when the operator set one (a custom domain), else the request's Host and the path API Gateway
put before the route (its stage, "/api"; nothing under `chalice local`)."""
from typing import Any


def base_url(request: Any, public_url: str = "") -> str:
    if public_url:
        return public_url
    headers = request.headers
    host = headers.get("host", "localhost")
    scheme = headers.get("x-forwarded-proto") or ("https" if ".amazonaws.com" in host
                                                  else "http")
    context = request.context or {}
    full, route = str(context.get("path") or ""), str(request.path or "")
    # the actual path ends with the route's path once its {parameters} are filled in
    suffix_parts = route.count("/")
    kept = full.split("/")
    prefix = "/".join(kept[:len(kept) - suffix_parts]) if suffix_parts else ""
    return f"{scheme}://{host}{prefix}"
