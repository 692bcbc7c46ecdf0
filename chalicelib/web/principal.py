"""Who called, as API Gateway's authorizers established it (the requestContext of a proxy event),
for the audit line. The function never authenticates anyone itself: it reads what the gateway
vouched for, and nothing a client can set (headers, body) counts.

Only identifiers are kept: an IAM ARN, a Cognito user's `sub`, a custom authorizer's principalId,
the id of an API key (never the key itself, which the context also carries)."""
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

IAM, COGNITO, CUSTOM, ANONYMOUS = "iam", "cognito", "custom", "anonymous"


@dataclass(frozen=True)
class Principal:
    kind: str                   # iam | cognito | custom | anonymous
    id: Optional[str] = None    # the ARN, the sub or the principalId; None when anonymous
    api_key_id: Optional[str] = None

    def as_log(self) -> Dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "api_key_id": self.api_key_id}


def principal_of(request_context: Optional[Mapping[str, Any]]) -> Principal:
    """The caller named by an API Gateway REST requestContext (Chalice's
    current_request.context): a Cognito user pool's claims.sub, else an IAM caller's userArn
    (or caller, for a role session the gateway reports without an ARN), else a custom
    authorizer's principalId, else anonymous. The API key's id rides along whichever it is."""
    context = request_context or {}
    identity = _mapping(context.get("identity"))
    authorizer = _mapping(context.get("authorizer"))
    api_key_id = _text(identity.get("apiKeyId"))
    sub = _text(_mapping(authorizer.get("claims")).get("sub"))
    if sub:
        return Principal(COGNITO, sub, api_key_id)
    arn = _text(identity.get("userArn")) or _text(identity.get("caller"))
    if arn:
        return Principal(IAM, arn, api_key_id)
    custom = _text(authorizer.get("principalId"))
    if custom:
        return Principal(CUSTOM, custom, api_key_id)
    return Principal(ANONYMOUS, None, api_key_id)


def source_ip(request_context: Optional[Mapping[str, Any]]) -> Optional[str]:
    return _text(_mapping((request_context or {}).get("identity")).get("sourceIp"))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None
