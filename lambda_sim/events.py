"""API Gateway REST (Lambda proxy) events, as API Gateway builds them for a binary upload.
Standard library only: runner.py and probe.py load it by its path, in a bare interpreter."""
import base64
from typing import Any, Dict, Optional


def proxy_event(method: str, path: str, body: bytes = b"", content_type: str = "",
                query: Optional[Dict[str, str]] = None,
                headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    sent = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "Accept": "*/*",
            "User-Agent": "curl/8.5.0", "X-Forwarded-Proto": "https"}
    if content_type:
        sent["Content-Type"] = content_type
    sent.update(headers or {})
    return {
        "resource": path, "path": path, "httpMethod": method, "headers": sent,
        "multiValueHeaders": {k: [v] for k, v in sent.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": path, "httpMethod": method, "path": f"/api{path}",
                           "stage": "api", "requestId": "0f6a2e5c-0000-4000-8000-000000000000",
                           "identity": {"sourceIp": "203.0.113.7"}},
        # API Gateway base64-encodes bodies of its binary media types
        "body": base64.b64encode(body).decode("ascii") if body else None,
        "isBase64Encoded": bool(body),
    }

