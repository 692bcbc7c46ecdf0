"""Every HTTP call the client makes, with one retry policy: a network error, a 5xx or a 429 is
tried again after an exponential backoff (Retry-After when the server sends one); any other
4xx is the answer, raised as a Refused with the server's Code and Message, for the caller to
record. A requests session per thread (a session is not meant to be shared across threads)."""
import random
import re
import threading
import time
from typing import Any, Callable, Dict, FrozenSet, Iterable, Mapping, Optional, Tuple

import requests

from client.auth import Auth

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0
S3_ERROR = re.compile(r"<Code>([^<]{1,100})</Code>.*?<Message>([^<]{0,500})</Message>", re.S)


class Refused(Exception):
    """The server's final answer for this request: a 4xx, or a retryable failure that did not
    go away after the retries. code/message are the server's (the API's `{"Code",
    "Message"}`, S3's XML error) or, for the network, NetworkError and what failed."""

    def __init__(self, code: str, message: str, status: Optional[int] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def error(self) -> Dict[str, str]:
        return {"Code": self.code, "Message": self.message}


class Transport:
    def __init__(self, auth: Auth, retries: int = 5, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, timeout_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.auth = auth
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.sleep = sleep
        self._local = threading.local()

    def api(self, method: str, url: str, body: Optional[bytes] = None) -> Any:
        """An API call (authenticated as the stage wants): its JSON answer."""
        def send() -> requests.Response:
            headers = {"Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            headers.update(self.auth.headers(method, url, body or b"", headers))
            return self.session().request(method, url, data=body, headers=headers,
                                          timeout=self.timeout_s, allow_redirects=False)
        response = self.retried(send)
        try:
            return response.json()
        except ValueError:
            raise Refused("InvalidResponse", f"{method} {_path(url)} answered "
                          f"{response.status_code} with a body that is not JSON",
                          response.status_code) from None

    def fetch(self, url: str, accept: str) -> Tuple[str, bytes]:
        """An API GET (authenticated as the stage wants) of another format than JSON: the
        answer's Content-Type and bytes (a job's SR)."""
        def send() -> requests.Response:
            headers = {"Accept": accept}
            headers.update(self.auth.headers("GET", url, b"", headers))
            return self.session().get(url, headers=headers, timeout=self.timeout_s,
                                      allow_redirects=False)
        response = self.retried(send)
        return response.headers.get("Content-Type", ""), response.content

    def post_elsewhere(self, url: str, body: bytes, headers: Mapping[str, str],
                       answers: Iterable[int] = ()) -> requests.Response:
        """A POST to a server that is not the API (a hospital's DICOMweb server): none of the
        API's credentials, only `headers`. A status in `answers` is returned like a 2xx (STOW-RS
        says what failed in a 409's body)."""
        def send() -> requests.Response:
            return self.session().post(url, data=body, headers=dict(headers),
                                       timeout=self.timeout_s, allow_redirects=False)
        return self.retried(send, frozenset(answers))

    def post_form(self, url: str, make_body: Callable[[], Any],
                  headers: Mapping[str, str], on_retry: Callable[[], None]) -> None:
        """The presigned S3 POST: no auth of ours (the policy is the authorization). make_body
        gives a fresh body for each attempt; on_retry runs before a retry (to rewind a
        progress bar)."""
        attempts = [0]

        def send() -> requests.Response:
            if attempts[0]:
                on_retry()
            attempts[0] += 1
            return self.session().post(url, data=make_body(), headers=dict(headers),
                                       timeout=self.timeout_s, allow_redirects=False)
        self.retried(send)

    def retried(self, send: Callable[[], requests.Response],
                answers: FrozenSet[int] = frozenset()) -> requests.Response:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = send()
            except (requests.ConnectionError, requests.Timeout) as error:
                if last:
                    raise Refused("NetworkError", _reason(error)) from None
                self.sleep(self._backoff(attempt))
                continue
            if response.status_code < 400 or response.status_code in answers:
                return response
            if response.status_code not in RETRY_STATUSES or last:
                raise refused(response)
            self.sleep(self._backoff(attempt, response.headers.get("Retry-After")))
        raise AssertionError("unreachable")

    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = True   # HTTPS_PROXY and the CA bundle of the environment
        return session

    def _backoff(self, attempt: int, retry_after: Optional[str] = None) -> float:
        if retry_after is not None:
            try:
                return min(MAX_RETRY_AFTER_S, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: use our own backoff
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def refused(response: requests.Response) -> Refused:
    """The Code and Message of an error answer: the API's JSON (API Gateway's own refusals have
    it too once the deploy commands added the Gateway Responses; without them only
    "message"), S3's XML, or the bare status."""
    status = response.status_code
    text = response.text[:4000]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("Code") or body.get("__type") or f"HTTP{status}"
        message = body.get("Message") or body.get("message") or ""
        return Refused(str(code), str(message), status)
    match = S3_ERROR.search(text)
    if match:
        return Refused(match.group(1), match.group(2), status)
    return Refused(f"HTTP{status}", response.reason or "", status)


def _path(url: str) -> str:
    from urllib.parse import urlsplit
    return urlsplit(url).path


def _reason(error: Exception) -> str:
    """What failed, without the URL (a presigned URL carries a signature)."""
    kind = "timed out" if isinstance(error, requests.Timeout) else "connection failed"
    return f"the request {kind} after the retries ({type(error).__name__})"
