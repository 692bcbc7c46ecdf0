"""API Gateway REST (Lambda proxy) events, as API Gateway builds them for a binary upload."""
import base64
from typing import Any, Dict, Optional


def proxy_event(method: str, path: str, body: bytes = b"", content_type: str = "",
                query: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "Accept": "*/*",
               "User-Agent": "curl/8.5.0", "X-Forwarded-Proto": "https"}
    if content_type:
        headers["Content-Type"] = content_type
    return {
        "resource": path, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
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
