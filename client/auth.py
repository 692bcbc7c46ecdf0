"""How the client proves who it is to a stage, one mode per XRAY_AUTH of the server (README,
Authentication): nothing, an API key, a SigV4 signature, a Cognito id token, or a key besides
one of the last two. Only the API's own calls carry it: the S3 upload is authorized by its
presigned policy and must carry nothing else."""
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from chalicelib.settings import AUTH_CHOICES

# The modes a stage may use (XRAY_AUTH), "none" first: the client's default.
MODES = ("none",) + tuple(mode for mode in AUTH_CHOICES if mode != "none")
API_KEY_ENV = "XRAY_API_KEY"
ID_TOKEN_ENV = "XRAY_ID_TOKEN"
API_KEY_HEADER = "x-api-key"
SERVICE = "execute-api"
# https://<api-id>.execute-api.<region>.amazonaws.com[.cn]/..., and the private API's
# https://<api-id>-<vpce-id>.execute-api.<region>.vpce.amazonaws.com
REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z]{2}(?:-[a-z]+)+-\d)\.(?:vpce\.)?"
                            r"amazonaws\.com(?:\.cn)?")


class AuthError(ValueError):
    """The mode cannot be used as given (a missing key, token, credentials or region)."""


@dataclass(frozen=True)
class Auth:
    mode: str
    api_key: str = ""
    id_token: str = ""
    region: str = ""
    credentials: Any = None         # botocore's (iam), refreshed by botocore when temporary

    def headers(self, method: str, url: str, body: bytes,
                headers: Mapping[str, str]) -> Dict[str, str]:
        """The headers to add to this API request (headers: those it already has, signed
        with it under iam)."""
        added: Dict[str, str] = {}
        mechanisms = self.mode.split("+")
        if "api_key" in mechanisms:
            added[API_KEY_HEADER] = self.api_key
        if "cognito" in mechanisms:
            added["Authorization"] = self.id_token   # as is: API Gateway wants no "Bearer"
        if "iam" in mechanisms:
            added.update(self._signed(method, url, body, {**headers, **added}))
        return added

    def _signed(self, method: str, url: str, body: bytes,
                headers: Mapping[str, str]) -> Dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        frozen = self.credentials.get_frozen_credentials()
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(frozen, SERVICE, self.region).add_auth(request)
        return {name: value for name, value in request.headers.items()
                if name.lower() in ("authorization", "x-amz-date", "x-amz-security-token",
                                    "x-amz-content-sha256")}


def make_auth(mode: str, api_url: str, api_key: Optional[str] = None,
              id_token: Optional[str] = None, region: Optional[str] = None,
              env: Optional[Mapping[str, str]] = None) -> Auth:
    """The Auth for a mode, from the flags or else the environment; AuthError says what is
    missing and where to put it."""
    env = os.environ if env is None else env
    if mode not in MODES:
        raise AuthError(f"--auth must be one of {', '.join(MODES)}, got {mode!r}")
    mechanisms = mode.split("+")
    key = token = ""
    if "api_key" in mechanisms:
        key = (api_key or env.get(API_KEY_ENV, "")).strip()
        if not key:
            raise AuthError(f"--auth {mode} needs the stage's API key: --api-key KEY or "
                            f"{API_KEY_ENV} (aws apigateway get-api-key --api-key <id> "
                            "--include-value --query value --output text)")
    if "cognito" in mechanisms:
        token = (id_token or env.get(ID_TOKEN_ENV, "")).strip()
        if not token:
            raise AuthError(f"--auth {mode} needs an id token of the stage's user pool: "
                            f"--token TOKEN or {ID_TOKEN_ENV}")
    if "iam" not in mechanisms:
        return Auth(mode, api_key=key, id_token=token)
    found_region, credentials = _iam(api_url, region)
    return Auth(mode, api_key=key, region=found_region, credentials=credentials)


def region_of(api_url: str) -> Optional[str]:
    match = REGION_IN_HOST.search(urlsplit(api_url).hostname or "")
    return match.group(1) if match else None


def _iam(api_url: str, region: Optional[str]) -> Tuple[str, Any]:
    found = region or region_of(api_url)
    if not found:
        raise AuthError(f"--auth iam signs for the API's region, which {api_url} does not "
                        "name (a custom domain?): add --region, e.g. --region eu-west-1")
    import botocore.session
    from botocore.exceptions import BotoCoreError
    try:
        credentials = botocore.session.Session().get_credentials()
    except BotoCoreError as error:   # e.g. an AWS_PROFILE that ~/.aws does not have
        raise AuthError(f"--auth iam could not read AWS credentials: {error}") from None
    if credentials is None:
        raise AuthError("--auth iam found no AWS credentials (environment, ~/.aws, SSO, "
                        "instance role): configure them, e.g. aws configure or AWS_PROFILE")
    return found, credentials
