"""Who may call the API: XRAY_AUTH (Settings.auth) as Chalice declares it on a route.

API Gateway enforces what this declares; the function never checks a signature or a token
itself, so the Lambda entry serves whatever API Gateway let through. That is also why
`chalice local` and Chalice's test client protect nothing here: they admit IAM-authorized
requests with a warning and decode Cognito tokens without checking their signatures.

The mode is read when app.py is imported. Chalice puts a stage's environment_variables into the
environment before it imports app.py (deploy, package and local alike), so one app.py gives
each stage of .chalice/config.json its own authorizer.

`api_key_required` only marks the routes: API Gateway then refuses a request without a key
that a usage plan of the stage holds. The deploy commands make the key, the plan and the
association (deploy/api_keys.py, deploy/package.py); Chalice makes none of them.

Pure Python on purpose: app.py imports it at deploy time.
"""
from typing import Any, Dict, Optional

from chalice import CognitoUserPoolAuthorizer, IAMAuthorizer
from chalice.app import Authorizer

from chalicelib.settings import AuthSettings

# The authorizer's name in the API's securityDefinitions (Chalice names IAM's "sigv4").
COGNITO_AUTHORIZER = "cognito_user_pool"


def authorizer(auth: AuthSettings) -> Optional[Authorizer]:
    """IAM (SigV4), a Cognito user pool authorizer, or None (none, or api_key alone)."""
    if auth.iam:
        return IAMAuthorizer()
    if auth.cognito:
        return CognitoUserPoolAuthorizer(COGNITO_AUTHORIZER,
                                         provider_arns=list(auth.user_pool_arns))
    return None


def route_auth(auth: AuthSettings) -> Dict[str, Any]:
    """The keyword arguments a protected route passes to `app.route`."""
    return {"authorizer": authorizer(auth), "api_key_required": auth.api_key}
