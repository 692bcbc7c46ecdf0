"""Every environment variable the function reads, in one place, with its default."""
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Tuple

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Env-var names. .chalice/config.json sets them per stage; locally the defaults apply.
EFS_ROOT = "XRAY_EFS_ROOT"              # where the EFS access point is mounted (/mnt/... on Lambda)
# Off Lambda (`chalice local`), a stage with this set reads its store from that folder (relative
# to the project) instead of XRAY_EFS_ROOT, and torch from this interpreter: the dev stage's is
# efs-local/, the demo store scripts/setup writes, so plain `chalice local` serves the demo model.
LOCAL_EFS_ROOT_ENV = "XRAY_LOCAL_EFS_ROOT"
# Set by Lambda itself in every function's environment: how the code knows it runs there.
LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
MODEL_PATH = "XRAY_MODEL_PATH"          # the served model's folder (manifest.json + weights)
PACKAGES_PATH = "XRAY_PACKAGES_PATH"    # torch & co. on EFS; unset = this interpreter's own
MAX_UPLOAD_BYTES = "XRAY_MAX_UPLOAD_BYTES"
MAX_PIXELS = "XRAY_MAX_PIXELS"
MIN_SIDE = "XRAY_MIN_SIDE"
# What runs the network: auto (onnxruntime when the model has an ONNX graph and onnxruntime is
# installed, else torch), onnxruntime, or torch.
BACKEND = "XRAY_BACKEND"
BACKEND_CHOICES = ("auto", "onnxruntime", "torch")
# true = decode JPEG 2000 and JPEG no finer than the model needs: a coarser resolution level
# (JPEG 2000) or DCT scale (JPEG), never coarser than the model manifest's
# reduced_decoding.coarsest_level allows (absent = 0: exact) nor below the model's input side.
# Not exact (see the README's fidelity table); false (the default) decodes every pixel.
REDUCED_DECODING = "XRAY_REDUCED_DECODING"
# Origins (scheme://host[:port], comma-separated) whose web pages may call the API from the
# browser. Empty (the default) = same-origin only; "*" = any origin, an explicit opt-in only.
CORS_ORIGINS = "XRAY_CORS_ORIGINS"
# Who may call the API (read when app.py is imported, so each stage of .chalice/config.json picks
# its own): none (local/dev only), iam (SigV4), cognito (a user pool's tokens), api_key, or
# iam+api_key / cognito+api_key. Unset = iam: a stage never ends up open by omission.
AUTH = "XRAY_AUTH"
AUTH_MECHANISMS = ("iam", "cognito", "api_key")
AUTH_CHOICES = ("iam", "none", "cognito", "api_key", "iam+api_key", "cognito+api_key")
# For cognito: the user pools whose tokens are accepted (comma-separated ARNs), and, for the
# upload page's sign-in, the pool's hosted UI (https://<prefix>.auth.<region>.amazoncognito.com
# or a custom domain) and an app client without a secret (authorization code + PKCE).
COGNITO_USER_POOL_ARNS = "XRAY_COGNITO_USER_POOL_ARNS"
COGNITO_DOMAIN = "XRAY_COGNITO_DOMAIN"
COGNITO_CLIENT_ID = "XRAY_COGNITO_CLIENT_ID"
# The stage this function serves, as its logs and metrics name it (Chalice does not tell a
# function its stage: .chalice/config.json sets this per stage). Unset = "local".
STAGE = "XRAY_STAGE"
DEFAULT_STAGE = "local"
# Upload jobs (chalicelib/jobs/): the private S3 bucket that holds this stage's job records,
# uploads and results (read when app.py is imported: the event rules name it). Unset = no jobs.
JOBS_BUCKET = "XRAY_JOBS_BUCKET"
JOB_MAX_BYTES = "XRAY_JOB_MAX_BYTES"          # the largest upload a job accepts
RESULT_DAYS = "XRAY_RESULT_DAYS"              # days a job's record and result are kept
KEEP_UPLOADS_DAYS = "XRAY_KEEP_UPLOADS_DAYS"  # 0 = uploads are deleted once processed
# true = a DICOM job keeps the header elements its SR and FHIR copy (patient and study modules)
KEEP_DICOM_HEADERS = "XRAY_KEEP_DICOM_HEADERS"
UPLOAD_EXPIRES_S = "XRAY_UPLOAD_EXPIRES_S"    # how long a presigned upload stays valid
SWEEP_MINUTES = "XRAY_SWEEP_MINUTES"          # how often the sweeper runs (read at import)
# The API's base URL as clients see it (https://api.example.org/v1), for the status links in
# answers, e-mails and webhooks; unset = derived from each request's Host and stage.
PUBLIC_URL = "XRAY_PUBLIC_URL"
SES_SENDER = "XRAY_SES_SENDER"                # a verified SES identity; unset = no e-mail
# An SSM Parameter Store SecureString (/chest-xray/prod/webhook-secret) holding the Standard
# Webhooks secret (whsec_<base64>); unset = no webhooks.
WEBHOOK_SECRET_NAME = "XRAY_WEBHOOK_SECRET_NAME"
DEFAULT_JOB_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_RESULT_DAYS = 7
DEFAULT_UPLOAD_EXPIRES_S = 600
DEFAULT_SWEEP_MINUTES = 10
# Read by Powertools itself, named here so that every variable the function honours is listed:
# "true" stops the EMF metric lines (POWERTOOLS_DEV=true does too, unless this is set to false).
METRICS_DISABLED = "POWERTOOLS_METRICS_DISABLED"
POWERTOOLS_DEV = "POWERTOOLS_DEV"
# Read by OpenJPEG itself each time it decodes: the threads a JPEG 2000 decode uses. Unset = the
# function's vCPUs (chalicelib/imaging/codestreams.py sets it); an operator's value is kept.
OPJ_NUM_THREADS = "OPJ_NUM_THREADS"

# A Lambda request payload is at most 6 MiB and API Gateway hands binary bodies over base64
# encoded (4 bytes for every 3). Keep 64 KiB for the rest of the event (headers, context).
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = (LAMBDA_PAYLOAD_BYTES - 64 * 1024) * 3 // 4
# 40 MP covers the largest radiography detectors (43x43 cm at 100 um is ~18 MP) with room to
# spare; a float32 copy of it is 160 MB, which a Lambda sized for DenseNet holds easily.
DEFAULT_MAX_PIXELS = 40_000_000
# Below this the center crop would be upsampled so far that the model sees mostly blur.
DEFAULT_MIN_SIDE = 32

LOCAL_EFS_ROOT = PROJECT_ROOT / "efs-local"

USER_POOL_ARN = re.compile(r"arn:aws[a-z-]*:cognito-idp:[a-z]{2}(-[a-z]+)+-\d:\d{12}:"
                           r"userpool/[a-z]{2}(-[a-z]+)+-\d_[0-9A-Za-z]+")


@dataclass(frozen=True)
class AuthSettings:
    """XRAY_AUTH and what its mechanisms need."""
    mode: str = "iam"                   # as configured, one of AUTH_CHOICES
    user_pool_arns: Tuple[str, ...] = ()
    cognito_domain: str = ""            # the hosted UI's origin, for the page's sign-in
    cognito_client_id: str = ""

    @property
    def mechanisms(self) -> Tuple[str, ...]:
        """("iam",), ("cognito", "api_key"), ... ; () for none."""
        return () if self.mode == "none" else tuple(self.mode.split("+"))

    @property
    def iam(self) -> bool:
        return "iam" in self.mechanisms

    @property
    def cognito(self) -> bool:
        return "cognito" in self.mechanisms

    @property
    def api_key(self) -> bool:
        return "api_key" in self.mechanisms

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "AuthSettings":
        mode = _choice(env, AUTH, AUTH_CHOICES)
        pools = tuple(p.strip() for p in env.get(COGNITO_USER_POOL_ARNS, "").split(",")
                      if p.strip())
        bad = [p for p in pools if not USER_POOL_ARN.fullmatch(p)]
        if bad:
            raise ValueError(f"{COGNITO_USER_POOL_ARNS} entries must be user pool ARNs like "
                             f"arn:aws:cognito-idp:eu-west-1:123456789012:userpool/"
                             f"eu-west-1_AbCdEf123, got {', '.join(map(repr, bad))}")
        auth = cls(mode=mode, user_pool_arns=pools,
                   cognito_domain=env.get(COGNITO_DOMAIN, "").strip().rstrip("/"),
                   cognito_client_id=env.get(COGNITO_CLIENT_ID, "").strip())
        if auth.cognito and not pools:
            raise ValueError(f"{AUTH}={mode} needs {COGNITO_USER_POOL_ARNS}: the ARN of the "
                             "user pool whose tokens the API accepts")
        if auth.cognito_domain and not re.fullmatch(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?|"
                                                    r"http://(localhost|127\.0\.0\.1)"
                                                    r"(:[0-9]{1,5})?", auth.cognito_domain):
            raise ValueError(f"{COGNITO_DOMAIN} must be the hosted UI's origin, like "
                             f"https://myapp.auth.eu-west-1.amazoncognito.com (no path), got "
                             f"{auth.cognito_domain!r}")
        return auth


@dataclass(frozen=True)
class JobSettings:
    """The upload-jobs path (chalicelib/jobs/): where jobs live and how long things are kept."""
    bucket: str = ""                    # "" = this stage has no jobs
    max_bytes: int = DEFAULT_JOB_MAX_BYTES
    result_days: int = DEFAULT_RESULT_DAYS
    keep_uploads_days: int = 0          # > 0: the operator opted in to keep uploads that long
    # the operator opted in to keep a DICOM job's patient and study elements beside its result,
    # for the SR and FHIR of GET /xray/jobs/{job_id} (reports/source.py)
    keep_dicom_headers: bool = False
    upload_expires_s: int = DEFAULT_UPLOAD_EXPIRES_S
    sweep_minutes: int = DEFAULT_SWEEP_MINUTES
    public_url: str = ""
    ses_sender: str = ""
    webhook_secret_name: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.bucket)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "JobSettings":
        public_url = env.get(PUBLIC_URL, "").strip().rstrip("/")
        if public_url and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", public_url):
            raise ValueError(f"{PUBLIC_URL} must be the API's base URL, like "
                             f"https://api.example.org/v1; got {public_url!r}")
        sender = env.get(SES_SENDER, "").strip()
        if sender and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", sender):
            raise ValueError(f"{SES_SENDER} must be an e-mail address SES has verified")
        return cls(
            bucket=env.get(JOBS_BUCKET, "").strip(),
            max_bytes=_positive_int(env, JOB_MAX_BYTES, DEFAULT_JOB_MAX_BYTES),
            result_days=_positive_int(env, RESULT_DAYS, DEFAULT_RESULT_DAYS),
            keep_uploads_days=_whole_number(env, KEEP_UPLOADS_DAYS, 0),
            keep_dicom_headers=_switch(env, KEEP_DICOM_HEADERS),
            upload_expires_s=_positive_int(env, UPLOAD_EXPIRES_S, DEFAULT_UPLOAD_EXPIRES_S),
            sweep_minutes=_positive_int(env, SWEEP_MINUTES, DEFAULT_SWEEP_MINUTES),
            public_url=public_url,
            ses_sender=sender,
            webhook_secret_name=env.get(WEBHOOK_SECRET_NAME, "").strip(),
        )


@dataclass(frozen=True)
class Settings:
    efs_root: Path
    model_path: Path
    packages_path: Optional[Path]
    max_upload_bytes: int
    max_pixels: int
    min_side: int
    cors_origins: Tuple[str, ...] = ()
    backend: str = "auto"
    reduced_decoding: bool = False
    auth: AuthSettings = AuthSettings()
    # What to tell an operator whose store is missing, for where this runs (see store_hint)
    on_lambda: bool = False
    local_store: bool = False  # XRAY_LOCAL_EFS_ROOT applied
    stage: str = DEFAULT_STAGE
    jobs: JobSettings = JobSettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        on_lambda = bool(env.get(LAMBDA_FUNCTION_NAME))
        local = None if on_lambda else env.get(LOCAL_EFS_ROOT_ENV)
        if local:  # the stage's EFS paths name a mount this machine does not have
            efs_root = PROJECT_ROOT / local
            model_path, packages = efs_root / "models" / "current", None
        else:
            efs_root = Path(env.get(EFS_ROOT) or LOCAL_EFS_ROOT)
            model_path = Path(env.get(MODEL_PATH) or efs_root / "models" / "current")
            packages = env.get(PACKAGES_PATH)
        return cls(
            efs_root=efs_root,
            model_path=model_path,
            packages_path=Path(packages) if packages else None,
            max_upload_bytes=_positive_int(env, MAX_UPLOAD_BYTES, DEFAULT_MAX_UPLOAD_BYTES),
            max_pixels=_positive_int(env, MAX_PIXELS, DEFAULT_MAX_PIXELS),
            min_side=_positive_int(env, MIN_SIDE, DEFAULT_MIN_SIDE),
            cors_origins=parse_origins(env.get(CORS_ORIGINS, "")),
            backend=_choice(env, BACKEND, BACKEND_CHOICES),
            reduced_decoding=_switch(env, REDUCED_DECODING, " (the level is the model's: its "
                                     "manifest's reduced_decoding.coarsest_level)"),
            auth=AuthSettings.from_env(env),
            on_lambda=on_lambda,
            local_store=bool(local),
            stage=_stage(env),
            jobs=JobSettings.from_env(env),
        )

    def store_hint(self) -> str:
        """What to do when the model store is not there, said where it is read from."""
        if self.on_lambda:
            return (f" The function reads it from EFS at {self.efs_root}: install a model with "
                    f"python -m vendor_efs.ship (see the README).")
        if self.local_store or self.efs_root == LOCAL_EFS_ROOT:
            return (f" Write the demo model there with scripts/setup (or .venv/bin/python -m "
                    f"vendor_efs.models demo --store {self.efs_root / 'models'}).")
        if str(self.efs_root).startswith("/mnt/"):
            return (f" This stage reads its store from EFS ({EFS_ROOT}={self.efs_root}), which "
                    f"is mounted only on Lambda. To serve locally run `chalice local` (the dev "
                    f"stage: the demo model in efs-local/) or scripts/serve, or give this stage "
                    f"{LOCAL_EFS_ROOT_ENV} in .chalice/config.json.")
        return (f" Install a model version there (python -m vendor_efs.models import, or "
                f"demo) or point {EFS_ROOT} or {MODEL_PATH} at a model store.")


def _choice(env: Mapping[str, str], name: str, choices: Tuple[str, ...]) -> str:
    value = env.get(name) or choices[0]
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _stage(env: Mapping[str, str]) -> str:
    """A metric dimension and a log field: a short name, never free text."""
    value = env.get(STAGE) or DEFAULT_STAGE
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", value):
        raise ValueError(f"{STAGE} must be the stage's name (letters, digits, - or _, at most 32),"
                         f" got {value!r}")
    return value


def _switch(env: Mapping[str, str], name: str, hint: str = "") -> bool:
    """An on/off variable: true, 1 or yes; false, 0, no or unset."""
    value = env.get(name, "").strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("", "false", "0", "no"):
        return False
    raise ValueError(f"{name} must be true or false; got {env[name]!r}{hint}")


def _whole_number(env: Mapping[str, str], name: str, default: int) -> int:
    """0 or more."""
    raw = env.get(name)
    return default if raw in (None, "", "0") else _positive_int(env, name, default)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?",
                     re.IGNORECASE)


def parse_origins(raw: str) -> Tuple[str, ...]:
    """"https://a.example, http://localhost:3000" -> ("https://a.example", "http://localhost:3000").
    Each entry must be an origin exactly as a browser sends it (no path, no trailing slash), so
    a typo fails at start-up instead of silently never matching."""
    origins = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        if entry == "*":
            origins.append(entry)
            continue
        if not _ORIGIN.fullmatch(entry):
            raise ValueError(f"{CORS_ORIGINS} entries must be origins like https://app.example "
                             f"or http://localhost:3000 (no path, no trailing slash), "
                             f"got {entry!r}")
        origins.append(entry.lower())
    return tuple(dict.fromkeys(origins))
