"""The notifier: the e-mail and the webhook of a job that has ended, each sent once.

The worker writes notices/<job_id>.json once, when a job that asked to be notified becomes
final; that object's Object Created event (through EventBridge) runs this, in a function outside
the VPC, where SES and the internet need no NAT. Events come at least once, so each channel is
claimed (notified/<job_id>/<channel>, written only if absent) before it is sent: a duplicate
event finds the claim and sends nothing. A send that a later try may fix (SES refused it, the
webhook kept failing) releases its claim and raises NotificationFailed once the job's other
channel is done, so Lambda's retry of the event tries it again; a receiver that refuses (a 4xx
other than 429, or a redirect, which is never followed) keeps the claim.

What goes out is the job's id, status and status link, nothing else: no image, no finding, no
patient field (the link needs the stage's auth). The log lines say what happened per channel,
never the address, and of a webhook URL its host only.

Webhooks follow Standard Webhooks (https://www.standardwebhooks.com): the headers webhook-id,
webhook-timestamp and webhook-signature, an HMAC-SHA256 of "<id>.<timestamp>.<body>" keyed with
the bytes of the stage's whsec_<base64> secret (an SSM SecureString parameter). sign() and
verify() are the two halves; verify() is what a receiver runs (as the README's example does)."""
import base64
import binascii
import hashlib
import hmac
import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional
from urllib.parse import urlsplit

from chalicelib.errors import NotificationFailed, NotifierMisconfigured
from chalicelib.jobs import layout
from chalicelib.jobs.events import created_object
from chalicelib.jobs.records import FINAL, SUCCEEDED, Job, iso, now
from chalicelib.jobs.store import JobStore, error_code
from chalicelib.observability.logging import logger
from chalicelib.settings import SES_SENDER, WEBHOOK_SECRET_NAME, JobSettings

EMAIL, WEBHOOK = "email", "webhook"
# What happened to one channel (a log field), and to the notice as a whole (handle's answer).
SENT, DUPLICATE, FAILED = "sent", "duplicate", "failed"
REJECTED = "rejected"   # the receiver answered a 4xx (not 429) or a redirect: not retried
REFUSED = "refused"     # a webhook URL this notifier does not call (not https, not loopback)
SKIPPED = "skipped"     # the stage has no sender, or no webhook secret
IGNORED, GONE, NOTHING = "ignored", "gone", "nothing"

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24       # the spec's lower bound (192 bits)
TIMEOUT_S = 10.0            # per attempt (urllib applies it to the connect and each read)
BACKOFF_S = (1, 2, 4, 8)    # the pauses between the attempts
ATTEMPTS = len(BACKOFF_S) + 1
# The longest a webhook can take: the notifier function's timeout must exceed it (with room
# for S3, SSM and SES).
WEBHOOK_WORST_CASE_S = ATTEMPTS * TIMEOUT_S + sum(BACKOFF_S)
TOLERANCE_S = 300           # verify(): how far a timestamp may be from now (the spec's 5 min)
USER_AGENT = "chest-xray-notifier"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")
MAX_URL_CHARS = 2048

# (url, body, headers, timeout_s) -> the HTTP status; raises OSError on a network error
Post = Callable[[str, bytes, Dict[str, str], float], int]


@dataclass(frozen=True)
class Notice:
    job_id: str
    status: str
    status_url: str


@dataclass(frozen=True)
class Delivery:
    outcome: str                # SENT, REJECTED or FAILED
    attempts: int
    http_status: Optional[int]  # the last answer's; None if the last attempt got none
    error_type: Optional[str] = None


def handle(event: Dict[str, Any], settings: JobSettings, store: JobStore, *, ses: Any = None,
           secrets: Any = None, post: Optional[Post] = None,
           sleep: Callable[[float], None] = time.sleep) -> str:
    """Sends what the job of the notice this event names asked for, each channel at most once.
    Answers a short word (sent, duplicate, rejected, refused, skipped, nothing, gone, ignored);
    raises NotifierMisconfigured (bad webhook secret) or NotificationFailed (retry me)."""
    obj = created_object(event)
    if obj is None or obj.bucket != store.bucket:
        return IGNORED
    job_id = layout.job_of_notice(obj.key)
    if job_id is None:
        return IGNORED
    raw = store.get_bytes(obj.key)
    if raw is None:
        return GONE  # the job was deleted (DELETE removes the notice with it)
    notice = _notice(raw, job_id)
    if notice is None:
        return IGNORED
    stored = store.read(job_id)
    if stored is None:
        return GONE
    notify = stored.job.notify or {}
    outcomes: Dict[str, str] = {}
    if notify.get(EMAIL):
        outcomes[EMAIL] = _email(notice, notify[EMAIL], settings, store, ses)
    if notify.get(WEBHOOK):
        outcomes[WEBHOOK] = _webhook(notice, notify[WEBHOOK], stored.job, settings, store,
                                     secrets, post or http_post, sleep)
    failed = [channel for channel, outcome in outcomes.items() if outcome == FAILED]
    if failed:
        raise NotificationFailed(f"Not delivered: {' and '.join(failed)} (the claim is "
                                 "released, so the event's retry sends it)")
    for word in (SENT, REJECTED, REFUSED, DUPLICATE, SKIPPED):
        if word in outcomes.values():
            return word
    return NOTHING


# e-mail
def email_message(notice: Notice) -> Dict[str, str]:
    """{"subject", "text"}: the status and the status link, and nothing else."""
    what = "its status and result" if notice.status == SUCCEEDED else "its status"
    return {"subject": f"Chest X-ray job {notice.status}",
            "text": (f"Your chest X-ray job has ended: {notice.status}.\n\n"
                     f"See {what} at\n{notice.status_url}\n"
                     "(the link needs the same sign-in or credentials as the API).\n\n"
                     "This message carries no image and no finding, by design.\n")}


def _email(notice: Notice, address: str, settings: JobSettings, store: JobStore,
           ses: Any) -> str:
    if not settings.ses_sender:  # the API refuses such jobs; the stage may have changed since
        return _log(EMAIL, SKIPPED, notice, reason=f"{SES_SENDER} is not set")
    key = layout.notified_key(notice.job_id, EMAIL)
    if not store.claim(key, _claim_body(notice)):
        return _log(EMAIL, DUPLICATE, notice)
    message = email_message(notice)
    try:
        if ses is None:
            from chalicelib.jobs.clients import client
            ses = client("ses")
        ses.send_email(Source=settings.ses_sender, Destination={"ToAddresses": [address]},
                       Message={"Subject": {"Data": message["subject"], "Charset": "UTF-8"},
                                "Body": {"Text": {"Data": message["text"],
                                                  "Charset": "UTF-8"}}})
    except Exception as error:  # SES's message quotes addresses: only its code is logged
        store.delete_object(key)
        return _log(EMAIL, FAILED, notice, error_type=type(error).__name__,
                    error_code=error_code(error))
    return _log(EMAIL, SENT, notice)


# webhooks
def _webhook(notice: Notice, url: str, job: Job, settings: JobSettings, store: JobStore,
             secrets: Any, post: Post, sleep: Callable[[float], None]) -> str:
    if not settings.webhook_secret_name:
        return _log(WEBHOOK, SKIPPED, notice, reason=f"{WEBHOOK_SECRET_NAME} is not set")
    if not allowed_url(url):
        return _log(WEBHOOK, REFUSED, notice)
    host = urlsplit(url).hostname
    # read before the claim: a secret to fix must not use up the claim
    secret = webhook_secret(secrets, settings.webhook_secret_name)
    key = layout.notified_key(notice.job_id, WEBHOOK)
    if not store.claim(key, _claim_body(notice)):
        return _log(WEBHOOK, DUPLICATE, notice, host=host)
    delivery = deliver(url, payload(notice, job.updated_at), secret, message_id(notice), post,
                       sleep)
    if delivery.outcome == FAILED:
        store.delete_object(key)
    return _log(WEBHOOK, delivery.outcome, notice, host=host, attempts=delivery.attempts,
                http_status=delivery.http_status, error_type=delivery.error_type)


def allowed_url(url: str) -> bool:
    """https to any host, or http to localhost/127.0.0.1 only; no user:password@, no spaces.
    The API checked it when the job was made; checked again where it is called."""
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS \
            or any(c.isspace() or not c.isprintable() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # raises on a port that is not a number in range
    except ValueError:
        return False
    if not parts.hostname or "@" in parts.netloc:
        return False
    return parts.scheme == "https" or (parts.scheme == "http"
                                       and parts.hostname in LOOPBACK_HOSTS)


def message_id(notice: Notice) -> str:
    """The same for every attempt and every duplicate event: receivers deduplicate on it."""
    return f"msg_{notice.job_id}_{notice.status}"


def payload(notice: Notice, at: str) -> bytes:
    """The body: the event's type, when the job ended (ISO 8601 UTC), and its id, status, link."""
    return json.dumps({"type": f"xray.job.{notice.status}", "timestamp": at,
                       "data": {"job_id": notice.job_id, "status": notice.status,
                                "status_url": notice.status_url}},
                      separators=(",", ":")).encode()


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after whsec_ (padding optional).
    ValueError, which never quotes the secret, for anything else."""
    text = secret.strip() if isinstance(secret, str) else ""
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(f"a Standard Webhooks secret starts with {SECRET_PREFIX}")
    encoded = text[len(SECRET_PREFIX):]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the part after {SECRET_PREFIX} must be base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret must hold at least {MIN_SECRET_BYTES} random bytes, "
                         f"it holds {len(key)}")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: "v1," + base64(HMAC-SHA256(key, "<id>.<ts>.<body>"))."""
    mac = hmac.new(secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body,
                   hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, msg_id: str, timestamp: str, body: bytes, signature_header: str, *,
           at: Optional[float] = None, tolerance_s: int = TOLERANCE_S) -> bool:
    """A receiver's check: one of the header's space-separated signatures is ours, and the
    timestamp is within tolerance_s of `at` (now by default), so an old delivery cannot be
    replayed."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if at is None else at) - sent_at) > tolerance_s:
        return False
    expected = sign(secret, msg_id, sent_at, body)
    return any(hmac.compare_digest(candidate.encode(), expected.encode())
               for candidate in (signature_header or "").split())


def create_command(name: str) -> str:
    """How an operator makes the secret (a SecureString parameter: free, unlike a Secrets
    Manager secret, which would be the stage's only idle cost)."""
    return (f"aws ssm put-parameter --name {name} --type SecureString "
            f"--value whsec_$(openssl rand -base64 32)")


def webhook_secret(secrets: Any, name: str) -> str:
    """The stage's Standard Webhooks secret, read from SSM Parameter Store (a SecureString,
    decrypted with the account's aws/ssm key) and checked. secrets: an SSM client."""
    how = f"create it with: {create_command(name)}"
    try:
        if secrets is None:
            from chalicelib.jobs.clients import client
            secrets = client("ssm")
        value = secrets.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except Exception as error:
        code = error_code(error) or type(error).__name__
        raise NotifierMisconfigured(f"The webhook secret {name} ({WEBHOOK_SECRET_NAME}) cannot "
                                    f"be read ({code}): {how}") from None
    try:
        secret_bytes(value)
    except ValueError as error:
        raise NotifierMisconfigured(f"The webhook secret {name} ({WEBHOOK_SECRET_NAME}) is not "
                                    f"a Standard Webhooks secret: {error}; {how}") from None
    return str(value).strip()


def deliver(url: str, body: bytes, secret: str, msg_id: str, post: Post,
            sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.time) -> Delivery:
    """POSTs the signed body until a 2xx (SENT) or another 4xx or redirect (REJECTED); a network
    error, 429 or 5xx is retried after BACKOFF_S, ATTEMPTS in all (then FAILED). Each attempt
    is signed with its own timestamp, the id and body staying the same."""
    status: Optional[int] = None
    error_type: Optional[str] = None
    for attempt in range(1, ATTEMPTS + 1):
        timestamp = int(clock())
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign(secret, msg_id, timestamp, body)}
        try:
            status, error_type = post(url, body, headers, TIMEOUT_S), None
        except (OSError, http.client.HTTPException) as error:  # refused, reset, timed out
            status, error_type = None, _error_type(error)
        if status is not None and 200 <= status < 300:
            return Delivery(SENT, attempt, status)
        if status is not None and status != 429 and status < 500:
            return Delivery(REJECTED, attempt, status)
        if attempt < ATTEMPTS:
            sleep(BACKOFF_S[attempt - 1])
    return Delivery(FAILED, ATTEMPTS, status, error_type)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as it came (an HTTPError): urllib would follow a POST's 301/302/303
    as a GET without the body, perhaps to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_post(url: str, body: bytes, headers: Dict[str, str], timeout_s: float) -> int:
    """One POST with urllib: the answer's status, whatever it is; OSError if none came."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:  # an answer, not a network error
        error.close()
        return int(error.code)


# shared
def _notice(raw: bytes, job_id: str) -> Optional[Notice]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("job_id") != job_id \
            or data.get("status") not in FINAL or not isinstance(data.get("status_url"), str):
        return None
    return Notice(job_id=job_id, status=data["status"], status_url=data["status_url"])


def _claim_body(notice: Notice) -> bytes:
    return json.dumps({"status": notice.status, "claimed_at": iso(now())}).encode()


def _error_type(error: Exception) -> str:
    """ConnectionRefusedError rather than the URLError urllib wraps it in."""
    reason = getattr(error, "reason", None)
    return type(reason if isinstance(reason, BaseException) else error).__name__


def _log(channel: str, outcome: str, notice: Notice, **fields: Any) -> str:
    """One line per channel: what happened, never to whom (no address, a URL's host only)."""
    extra: Mapping[str, Any] = {"event": "notify", "channel": channel, "outcome": outcome,
                                "job_status": notice.status,
                                **{k: v for k, v in fields.items() if v is not None}}
    (logger.warning if outcome == FAILED else logger.info)("job notification", extra=extra)
    return outcome
