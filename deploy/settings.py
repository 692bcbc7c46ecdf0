"""Reads one stage of .chalice/config.json and validates the values a user must fill in, offline,
before anything touches AWS. Chalice ignores the keys it does not know (efs_access_point_arn,
efs_upload_bucket), so every user value lives in that one file.

The app has five Lambda functions, and each is validated with the values Chalice will give it:
they are looked up with Chalice's own Config, scoped to the function, so a per-function override
(`stages.<stage>.lambda_functions.<name>`) is seen exactly as `chalice deploy` sees it.

- api_handler: the REST API. Read-only EFS mount, at most 28 s (API Gateway waits 29 s).
- efs_loader: installs archives from S3 onto EFS (python -m vendor_efs.ship). The only writer:
  its own role (policy-<stage>-loader.json), a long timeout, and reserved concurrency 1 so that
  two installs never race.
- job_worker: classifies job uploads and bucket batch inputs (chalicelib/jobs/worker.py). In the
  VPC with a read-only mount, like the API (it loads the same model), with a longer timeout.
- job_notifier, job_sweeper: e-mail/webhooks, and the scheduled sweep. OUTSIDE the VPC (their
  own `"subnet_ids": [], "security_group_ids": []`): SES and webhook URLs are on the internet,
  which a function in the VPC reaches only through a NAT gateway (billed by the hour); neither
  needs EFS. The sweeper runs one at a time and finishes before its next run.

The jobs path's variables (XRAY_JOBS_BUCKET and the rest of chalicelib.settings.JobSettings) are
read with the app's own parser, stage-wide only: app.py builds the EventBridge rules and the
schedule from them when Chalice imports it, with the stage's variables, so a per-function value
would make a function disagree with its own trigger. The jobs bucket must not be the EFS upload
bucket: the deploy owns the jobs bucket's whole lifecycle, CORS and notification
configuration (its lifecycle rules delete objects by prefix, its CORS rule lets browsers
post to it), none of which belongs on the bucket that holds the runtime and model archives.

Who may call the API (XRAY_AUTH, chalicelib/web/auth.py) is checked here too: a known mode, the
user pool ARNs cognito needs, never none on prod (an open API by a forgotten line), and for
api_key stages the usage plan (the project key `usage_plan`: throttle and quota) the deploy
commands create. XRAY_CORS_ORIGINS is parsed as the app will, since the Gateway Responses name
the allowed origin (deploy/gateway_responses.py), and so does the jobs bucket's CORS rule.

The architecture (Chalice's lambda_architecture: x86_64 when unset, or arm64) is a stage's, not
a function's: Chalice builds one deployment package per stage, its wheels picked for the stage's
value, and gives every function that value (it reads no per-function lambda_architecture). A
value in a function's section, which Chalice would silently ignore, is refused.
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from chalice.config import Config

from chalicelib import settings as app_settings
from chalicelib.jobs.notify import WEBHOOK_WORST_CASE_S
from chalicelib.settings import AUTH as ENV_AUTH
from chalicelib.settings import CORS_ORIGINS as ENV_CORS_ORIGINS
from chalicelib.settings import EFS_ROOT as ENV_EFS_ROOT
from chalicelib.settings import JOBS_BUCKET as ENV_JOBS_BUCKET
from chalicelib.settings import MODEL_PATH as ENV_MODEL
from chalicelib.settings import PACKAGES_PATH as ENV_PACKAGES
from chalicelib.settings import AuthSettings, JobSettings, parse_origins
from deploy.chalice_files import CONFIG, read_config, stage_value
from deploy.errors import DeployError
from deploy.vendor import MACHINES

# Lambda's own rule for FileSystemConfigs.LocalMountPath (one level below /mnt).
MOUNT_PATH = re.compile(r"^/mnt/[A-Za-z0-9_.-]+$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")
SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$")
ACCESS_POINT_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):elasticfilesystem:(?P<region>[a-z]{2}(-[a-z]+)+-\d):"
    r"(?P<account>\d{12}):access-point/(?P<id>fsap-[0-9a-f]{17})$")
# S3's general purpose bucket naming rules.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
# The key prefix vendor_efs.ship uploads under: the only objects the loader may read.
UPLOAD_PREFIX = "efs-upload/"

# Chalice's resource names (app.py)
API, LOADER = "api_handler", "efs_loader"
WORKER, NOTIFIER, SWEEPER = "job_worker", "job_notifier", "job_sweeper"
FUNCTIONS = (API, LOADER, WORKER, NOTIFIER, SWEEPER)
# In the VPC, mounting the access point (the loader read-write, the others read-only), and
# outside it (no EFS; SES and webhooks without a NAT gateway).
EFS_FUNCTIONS = (API, LOADER, WORKER)
OUTSIDE_VPC = (NOTIFIER, SWEEPER)
# The functions that load the model: torch and the model must lie on the mounted EFS.
CLASSIFIERS = (API, WORKER)
# The jobs path's variables (chalicelib.settings.JobSettings): stage-wide only (module docstring).
JOB_ENV = (ENV_JOBS_BUCKET, app_settings.JOB_MAX_BYTES, app_settings.RESULT_DAYS,
           app_settings.KEEP_UPLOADS_DAYS, app_settings.UPLOAD_EXPIRES_S,
           app_settings.SWEEP_MINUTES, app_settings.PUBLIC_URL, app_settings.SES_SENDER,
           app_settings.WEBHOOK_SECRET_NAME)

# The stage that may never be open (XRAY_AUTH=none): the one the README deploys for real use.
PROTECTED_STAGE = "prod"
USAGE_PLAN_KEY = "usage_plan"
QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")


@dataclass(frozen=True)
class UsagePlan:
    """The `usage_plan` of an api_key stage; the defaults suit one model worker per request a
    second or so, as the reserved concurrency of the committed stages allows."""
    throttle_rate_limit: float = 5.0   # requests per second, steady
    throttle_burst_limit: int = 10     # requests at once
    quota_limit: int = 5000            # requests per period
    quota_period: str = "DAY"


USAGE_PLAN_FIELDS = tuple(UsagePlan.__dataclass_fields__)


@dataclass(frozen=True)
class Limits:
    timeout_s: Tuple[int, int]
    memory_mb: Tuple[int, int]
    concurrency: Tuple[int, int]
    timeout_why: str
    policy_suffix: str


LIMITS = {
    # API Gateway (REST) gives up after 29 s; a function still running then is paid for but
    # unheard. torch alone takes ~0.5 GB resident; DenseNet-121 and a large image need the rest.
    API: Limits(timeout_s=(1, 28), memory_mb=(1024, 10240), concurrency=(1, 1000),
                timeout_why=" (API Gateway's limit is 29 s)", policy_suffix=""),
    # Extracting and hashing hundreds of MB onto EFS takes minutes (Lambda's maximum is 900 s).
    # One install at a time: two loaders switching the same pointer would race.
    LOADER: Limits(timeout_s=(120, 900), memory_mb=(1024, 10240), concurrency=(1, 1),
                   timeout_why=" (the loader extracts hundreds of MB onto EFS; Lambda allows "
                   "at most 900 s)", policy_suffix="-loader"),
    # A job may be the first request of a container (the model loads from EFS) and an image of
    # up to XRAY_JOB_MAX_BYTES; the same memory as the API holds the same model.
    WORKER: Limits(timeout_s=(60, 900), memory_mb=(1024, 10240), concurrency=(1, 1000),
                   timeout_why=" (a cold start loads the model from EFS before a large image is "
                   "decoded; Lambda allows at most 900 s)", policy_suffix="-worker"),
    # One e-mail and one webhook, the webhook retried with backoff (its worst case, plus room
    # for S3, SSM and SES); no model.
    NOTIFIER: Limits(timeout_s=(int(WEBHOOK_WORST_CASE_S) + 25, 900), memory_mb=(128, 10240),
                     concurrency=(1, 1000),
                     timeout_why=f" (a webhook's retries can take {WEBHOOK_WORST_CASE_S:.0f} s; "
                     "Lambda allows at most 900 s)", policy_suffix="-notifier"),
    # Lists and copies objects; one sweep at a time (two would requeue the same uploads).
    SWEEPER: Limits(timeout_s=(30, 900), memory_mb=(128, 10240), concurrency=(1, 1),
                    timeout_why=" (a sweep lists every pending job; Lambda allows at most "
                    "900 s)", policy_suffix="-sweeper"),
}


@dataclass(frozen=True)
class FunctionSettings:
    """One Lambda function as Chalice will deploy it."""
    name: str  # Chalice's resource name, as in .chalice/deployed/<stage>.json
    policy_file: Path
    memory_mb: int
    timeout_s: int
    reserved_concurrency: int
    subnet_ids: List[str]
    security_group_ids: List[str]
    environment: Dict[str, str]
    tracing: bool = False  # Chalice's "xray": Lambda active tracing (and the API stage's)

    @property
    def writes_efs(self) -> bool:
        return self.name == LOADER

    @property
    def mounts_efs(self) -> bool:
        return self.name in EFS_FUNCTIONS

    @property
    def in_vpc(self) -> bool:
        return bool(self.subnet_ids)


@dataclass(frozen=True)
class StageSettings:
    project_dir: Path
    stage: str
    access_point_arn: str
    access_point_id: str
    region: str
    account: str
    partition: str
    mount_path: str
    upload_bucket: str
    api: FunctionSettings
    loader: FunctionSettings
    worker: FunctionSettings
    notifier: FunctionSettings
    sweeper: FunctionSettings
    jobs: JobSettings               # the stage's XRAY_JOBS_BUCKET and the rest, as the app reads
    app_name: str = "chest-xray"
    api_stage: str = "api"              # api_gateway_stage: the REST API's stage name
    auth: AuthSettings = AuthSettings()
    cors_origins: Tuple[str, ...] = ()
    usage_plan: Optional[UsagePlan] = None  # only for api_key stages
    architecture: str = "x86_64"        # lambda_architecture: x86_64 | arm64, every function's
    warnings: Tuple[str, ...] = ()      # deployable, but the user should know

    @property
    def resource_name(self) -> str:
        """What the API key and usage plan are called: <app>-<stage>, as Chalice names the
        function."""
        return f"{self.app_name}-{self.stage}"

    @property
    def functions(self) -> Tuple[FunctionSettings, ...]:
        return (self.api, self.loader, self.worker, self.notifier, self.sweeper)

    @property
    def efs_functions(self) -> Tuple[FunctionSettings, ...]:
        """The functions in the VPC that mount the access point."""
        return tuple(f for f in self.functions if f.mounts_efs)

    @property
    def jobs_bucket(self) -> str:
        return self.jobs.bucket

    def function(self, name: str) -> FunctionSettings:
        return next(f for f in self.functions if f.name == name)

    @property
    def file_system_configs(self) -> List[Dict[str, str]]:
        return [{"Arn": self.access_point_arn, "LocalMountPath": self.mount_path}]

    @property
    def upload_objects_arn(self) -> str:
        return f"arn:{self.partition}:s3:::{self.upload_bucket}/{UPLOAD_PREFIX}*"


def policy_file_name(stage: str, function: str) -> str:
    return f"policy-{stage}{LIMITS[function].policy_suffix}.json"


def load_stage(project_dir: Path, stage: str) -> StageSettings:
    """Every problem found is reported at once, each naming its key."""
    config = read_config(project_dir)
    stages = config.get("stages") or {}
    if stage not in stages:
        raise DeployError(f"{CONFIG}: stage {stage!r} is not defined under \"stages\" "
                          f"(defined: {', '.join(sorted(stages)) or 'none'})")
    return _validate(project_dir, stage, config)


def _validate(project_dir: Path, stage: str, top: Dict[str, Any]) -> StageSettings:
    problems: List[str] = []

    def value(key: str) -> Any:
        return stage_value(top, stage, key)

    def report(path: str, message: str) -> None:
        problems.append(f"{CONFIG} {path}: {message}")

    def problem(key: str, message: str) -> None:
        report(f"stages.{stage}.{key}", message)

    arn = value("efs_access_point_arn")
    match = ACCESS_POINT_ARN.match(arn) if isinstance(arn, str) else None
    if match is None:
        problem("efs_access_point_arn", f"must be an EFS access point ARN like arn:aws:"
                f"elasticfilesystem:eu-west-1:123456789012:access-point/fsap-0123456789abcdef0 "
                f"(the file system's own ARN is not accepted by Lambda); got {arn!r}")
    bucket = value("efs_upload_bucket")
    bucket_problem = _bucket_problem(bucket)
    if bucket_problem:
        problem("efs_upload_bucket", f"{bucket_problem}: name the private S3 bucket "
                f"`python -m vendor_efs.ship` uploads to (in the function's region); got "
                f"{bucket!r}")
    if value("api_gateway_endpoint_type") != "REGIONAL":
        problem("api_gateway_endpoint_type", "must be REGIONAL (an edge-optimized API adds a "
                "CloudFront hop and cannot have its 29 s timeout raised)")

    api_values = {key: getattr(Config(chalice_stage=stage, function_name=API,
                                      config_from_disk=top), key) for key in SHARED}
    auth, origins, plan, warnings = _access(stage, top, api_values["environment_variables"],
                                            problem)
    jobs = _jobs(stage, top, bucket, problem, report)
    xray_origins: Set[Tuple[str, str]] = set()
    for name in FUNCTIONS:
        xray = Config(chalice_stage=stage, function_name=name, config_from_disk=top).xray_enabled
        if xray is not None and not isinstance(xray, bool):
            xray_origins.add((_origin(top, stage, name, "xray"), repr(xray)))
    for where, got in sorted(xray_origins):  # a stage-wide value once, not once per function
        report(where, f"is Chalice's X-Ray tracing switch and must be true or false; got {got}")
    architecture = _architecture(stage, top, report)
    found = {API: _function(project_dir, stage, top, API, report)}
    for name in FUNCTIONS[1:]:
        found[name] = _function(project_dir, stage, top, name, report, api=api_values)
    api = found[API]
    mount = api.environment.get(ENV_EFS_ROOT) if api else None
    for name in EFS_FUNCTIONS[1:]:
        other = found[name]
        if api and other and other.environment.get(ENV_EFS_ROOT) != mount:
            problem(f"lambda_functions.{name}.environment_variables.{ENV_EFS_ROOT}",
                    f"must be the API's mount path {mount!r}: every function that mounts EFS "
                    f"mounts the same access point at the same place; got "
                    f"{other.environment.get(ENV_EFS_ROOT)!r}")
    sweeper = found[SWEEPER]
    if sweeper and jobs and sweeper.timeout_s >= jobs.sweep_minutes * 60:
        report(f"stages.{stage}.lambda_functions.{SWEEPER}.lambda_timeout",
               f"must be shorter than the sweep's period ({app_settings.SWEEP_MINUTES}="
               f"{jobs.sweep_minutes} minutes): a sweep still running when the next starts is "
               f"throttled (reserved concurrency 1); got {sweeper.timeout_s}")
    if problems:
        raise DeployError("the configuration is not ready to deploy:\n  " + "\n  ".join(problems))
    functions = {name: f for name, f in found.items() if f is not None}
    assert match is not None and len(functions) == len(FUNCTIONS) and mount is not None
    assert auth is not None and jobs is not None
    return StageSettings(
        project_dir=project_dir, stage=stage, access_point_arn=arn,
        access_point_id=match["id"], region=match["region"], account=match["account"],
        partition=match["partition"], mount_path=mount, upload_bucket=bucket,
        api=functions[API], loader=functions[LOADER], worker=functions[WORKER],
        notifier=functions[NOTIFIER], sweeper=functions[SWEEPER], jobs=jobs,
        app_name=str(top.get("app_name")),
        api_stage=str(value("api_gateway_stage") or "api"), auth=auth, cors_origins=origins,
        usage_plan=plan, architecture=architecture, warnings=tuple(warnings))


def _architecture(stage: str, top: Dict[str, Any], report: Callable[[str, str], None]) -> str:
    """The stage's lambda_architecture (module docstring). Chalice reads it per stage only and
    ignores it in a function's section, so a function's value is refused rather than ignored."""
    key = "lambda_architecture"
    architecture = Config(chalice_stage=stage, config_from_disk=top).lambda_architecture
    if architecture not in MACHINES:
        where = f"stages.{stage}.{key}" if key in top["stages"][stage] else key
        report(where, f"must be one of {', '.join(map(repr, MACHINES))} (Lambda's "
               f"architectures; x86_64 when unset); got {architecture!r}")
    sections = ((f"stages.{stage}.lambda_functions", top["stages"][stage]),
                ("lambda_functions", top))
    for where, holder in sections:
        for name, own in sorted((holder.get("lambda_functions") or {}).items()):
            if isinstance(own, dict) and key in own:
                report(f"{where}.{name}.{key}",
                       f"is ignored by Chalice, which builds one deployment package per stage "
                       f"and runs every function on the stage's architecture ({architecture!r}):"
                       f" set it on the stage (stages.{stage}.{key}) only; got {own[key]!r}")
    return architecture


def _jobs(stage: str, top: Dict[str, Any], upload_bucket: Any,
          problem: Callable[[str, str], None],
          report: Callable[[str, str], None]) -> Optional[JobSettings]:
    """The stage's job variables, parsed by the app's own JobSettings from the environment
    Chalice imports app.py with (the stage's, no function's): what the rules are built from."""
    env = Config(chalice_stage=stage, config_from_disk=top).environment_variables
    key = f"environment_variables.{ENV_JOBS_BUCKET}"
    ok = True
    sections = [(f"stages.{stage}.lambda_functions",
                 top["stages"][stage].get("lambda_functions")),
                ("lambda_functions", top.get("lambda_functions"))]
    for where, functions in sections:
        for name, own in sorted((functions or {}).items()):
            own_env = (own or {}).get("environment_variables") or {}
            for variable in sorted(set(own_env) & set(JOB_ENV)):
                ok = False
                report(f"{where}.{name}.environment_variables.{variable}",
                       f"set it in stages.{stage}.environment_variables instead: app.py builds "
                       "the jobs path's rules and schedule from the stage's values when Chalice "
                       "imports it, so every function must read the same")
    try:
        jobs = JobSettings.from_env(env)
    except ValueError as error:
        message = str(error)
        variable = next((v for v in JOB_ENV if message.startswith(v)), ENV_JOBS_BUCKET)
        problem(f"environment_variables.{variable}", message)
        return None
    bucket_problem = _bucket_problem(jobs.bucket or None)
    if bucket_problem:
        problem(key, f"{bucket_problem}: name the private S3 bucket that holds this stage's "
                f"jobs (python -m deploy creates it, in the functions' region, if it does not "
                f"exist); got {env.get(ENV_JOBS_BUCKET)!r}")
        ok = False
    elif jobs.bucket == upload_bucket:
        problem(key, f"must not be efs_upload_bucket ({upload_bucket}): the deploy sets the "
                "jobs bucket's whole lifecycle (objects expire by prefix), CORS (browsers post "
                "to it) and event configuration, none of which belongs on the bucket of the "
                "runtime and model archives; use a bucket of its own")
        ok = False
    return jobs if ok else None


def _access(stage: str, top: Dict[str, Any], env: Dict[str, str],
            problem: Callable[[str, str], None]
            ) -> Tuple[Optional[AuthSettings], Tuple[str, ...], Optional[UsagePlan], List[str]]:
    """XRAY_AUTH, XRAY_CORS_ORIGINS and the usage plan, read as the deployed app will read
    them; problems go to `problem`, what is deployable but worth saying to the warnings."""
    warnings: List[str] = []
    env_key = f"environment_variables.{ENV_AUTH}"
    try:
        auth: Optional[AuthSettings] = AuthSettings.from_env(env)
    except ValueError as error:
        problem(env_key, str(error))
        auth = None
    try:
        origins = parse_origins(env.get(ENV_CORS_ORIGINS, ""))
    except ValueError as error:
        problem(f"environment_variables.{ENV_CORS_ORIGINS}", str(error))
        origins = ()
    if auth is not None and not auth.mechanisms:
        if stage == PROTECTED_STAGE:
            problem(env_key, f"is none, which leaves the {stage} API open to anyone who finds "
                    "its URL: set \"iam\" (SigV4-signed calls, the default when unset), or "
                    "\"cognito\" with XRAY_COGNITO_USER_POOL_ARNS (either may add \"+api_key\")")
        else:
            warnings.append(f"stage {stage} has {ENV_AUTH}=none: once deployed, its API is "
                            "open to anyone who finds the URL (set iam or cognito in "
                            f"stages.{stage}.environment_variables to protect it)")
    if auth is not None and auth.mechanisms == ("api_key",):
        warnings.append(f"stage {stage} has {ENV_AUTH}=api_key alone: an API key identifies "
                        "callers (for the usage plan's throttle and quota) but does not protect "
                        "the API, since anyone holding the key is admitted; use iam+api_key or "
                        "cognito+api_key to protect it")
    raw = stage_value(top, stage, USAGE_PLAN_KEY)
    plan = None
    if auth is not None and auth.api_key:
        plan = _usage_plan(raw, lambda m: problem(USAGE_PLAN_KEY, m))
    elif raw is not None:
        warnings.append(f"stage {stage}: {USAGE_PLAN_KEY} is ignored: {ENV_AUTH} has no "
                        "api_key, so no key or usage plan is made")
    return auth, origins, plan, warnings


def _usage_plan(raw: Any, report: Callable[[str], None]) -> Optional[UsagePlan]:
    """The stage's usage plan; a missing key, or a missing field, takes UsagePlan's default."""
    if raw is None:
        return UsagePlan()
    if not isinstance(raw, dict):
        report(f"must be an object with {', '.join(USAGE_PLAN_FIELDS)}; got {raw!r}")
        return None
    unknown = sorted(set(raw) - set(USAGE_PLAN_FIELDS))
    found: List[str] = []
    if unknown:
        found.append(f"unknown field(s) {', '.join(unknown)} (known: "
                     f"{', '.join(USAGE_PLAN_FIELDS)})")
    values = {**UsagePlan().__dict__, **{k: v for k, v in raw.items() if k not in unknown}}
    rate = values["throttle_rate_limit"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
        found.append(f"throttle_rate_limit must be a positive number of requests per second; "
                     f"got {rate!r}")
    for name in ("throttle_burst_limit", "quota_limit"):
        if _whole(values[name], 1, 10**9, found.append) == 0:
            found[-1] = f"{name} {found[-1]}"
    if values["quota_period"] not in QUOTA_PERIODS:
        found.append(f"quota_period must be one of {', '.join(QUOTA_PERIODS)}; got "
                     f"{values['quota_period']!r}")
    if found:
        report("; ".join(found))
        return None
    return UsagePlan(throttle_rate_limit=float(rate),
                     throttle_burst_limit=values["throttle_burst_limit"],
                     quota_limit=values["quota_limit"], quota_period=values["quota_period"])


UNSET = "unset"


def _origin(top: Dict[str, Any], stage: str, name: str, key: str) -> str:
    """Where Chalice finds a per-function value: its search order (chalice/config.py)."""
    own = top["stages"][stage]
    for where, found in ((f"stages.{stage}.lambda_functions.{name}",
                          (own.get("lambda_functions") or {}).get(name) or {}),
                         (f"stages.{stage}", own),
                         (f"lambda_functions.{name}",
                          (top.get("lambda_functions") or {}).get(name) or {}),
                         ("", top)):
        if isinstance(found, dict) and found.get(key) is not None:
            return f"{where}.{key}".lstrip(".")
    return UNSET


# Values both functions normally inherit from the stage: a problem in one is reported once.
SHARED = ("subnet_ids", "security_group_ids", "environment_variables")


def _function(project_dir: Path, stage: str, top: Dict[str, Any], name: str,
              report: Callable[[str, str], None],
              api: Optional[Dict[str, Any]] = None) -> Optional[FunctionSettings]:
    """The function's values as Chalice resolves them; problems name where to set them: the
    stage for the API, stages.<stage>.lambda_functions.<name> for the others."""
    chalice = Config(chalice_stage=stage, function_name=name, config_from_disk=top,
                     default_params={"autogen_policy": True})
    limits = LIMITS[name]
    found: List[str] = []
    resolved = {key: getattr(chalice, key) for key in (
        "subnet_ids", "security_group_ids", "environment_variables", "lambda_memory_size",
        "lambda_timeout", "reserved_concurrency", "iam_policy_file")}

    def problem(key: str, message: str, own: bool = False) -> None:
        """own: a problem of this function's even when its value is the API's."""
        found.append(key)
        base = key.split(".")[0]
        origin = _origin(top, stage, name, base)
        rest = key[len(base):]
        if name == API:
            # where the user set it: a per-function override if there is one, else the stage
            path = origin + rest if ".lambda_functions." in f".{origin}" \
                else f"stages.{stage}.{key}"
            report(path, message)
        elif not own and api is not None and base in SHARED and resolved[base] == api.get(base):
            pass  # the same value as the API's, already reported there
        else:
            own_section = f"stages.{stage}.lambda_functions.{name}."
            inherited = "" if origin.startswith(own_section) or origin == UNSET \
                else f" (inherited from {origin}: give {name} its own value here)"
            report(own_section + key, f"{message}{inherited}")

    if name in OUTSIDE_VPC:
        subnets, groups = [], []
        for key in ("subnet_ids", "security_group_ids"):
            if resolved[key] != []:
                problem(key, "must be [] (subnet_ids and security_group_ids both): this "
                        "function runs outside the VPC, where it reaches SES and webhook URLs "
                        "without a NAT gateway, and needs no EFS; got "
                        f"{resolved[key]!r}", own=True)
    else:
        subnets = _id_list(resolved["subnet_ids"], SUBNET_ID, "subnet-0123456789abcdef0",
                           lambda m: problem("subnet_ids", m))
        groups = _id_list(resolved["security_group_ids"], SECURITY_GROUP_ID,
                          "sg-0123456789abcdef0", lambda m: problem("security_group_ids", m))

    env = resolved["environment_variables"]
    mount = env.get(ENV_EFS_ROOT)
    env_key = f"environment_variables.{ENV_EFS_ROOT}"
    if name in EFS_FUNCTIONS and (not isinstance(mount, str) or not MOUNT_PATH.match(mount)):
        problem(env_key, f"is where Lambda mounts the access point and must be one folder "
                f"directly under /mnt/, like /mnt/xray; got {mount!r}")
        mount = None
    if name in CLASSIFIERS:
        for key in (ENV_PACKAGES, ENV_MODEL):
            inner = env.get(key)
            if mount and inner is not None and not str(inner).startswith(mount + "/"):
                problem(f"environment_variables.{key}", f"must lie under {ENV_EFS_ROOT} "
                        f"({mount}/...), or torch and the model are not on the mounted EFS; "
                        f"got {inner!r}")
        if mount and ENV_PACKAGES not in env:
            problem(f"environment_variables.{ENV_PACKAGES}", "is missing: torch comes from "
                    f"EFS on Lambda (e.g. {mount}/packages)")

    memory = _whole(resolved["lambda_memory_size"], *limits.memory_mb,
                    lambda m: problem("lambda_memory_size", m))
    timeout = _whole(resolved["lambda_timeout"], *limits.timeout_s,
                     lambda m: problem("lambda_timeout", m + limits.timeout_why))
    concurrency = _whole(resolved["reserved_concurrency"], *limits.concurrency,
                         lambda m: problem("reserved_concurrency", m))
    wanted = policy_file_name(stage, name)
    if chalice.autogen_policy is not False or chalice.manage_iam_role is not True \
            or resolved["iam_policy_file"] != wanted:
        problem("iam_policy_file", f'must be "{wanted}" with "autogen_policy": false and '
                "\"manage_iam_role\": true: the deploy command writes that policy (Chalice's "
                "own never allows elasticfilesystem:ClientMount); got "
                f"{resolved['iam_policy_file']!r}")
    if found:
        return None
    return FunctionSettings(
        name=name, policy_file=project_dir / ".chalice" / wanted, memory_mb=memory,
        timeout_s=timeout, reserved_concurrency=concurrency, subnet_ids=subnets,
        security_group_ids=groups, environment=dict(env),
        tracing=chalice.xray_enabled is True)


def _bucket_problem(name: Any) -> str:
    if not isinstance(name, str) or not name:
        return "is missing"
    if not BUCKET_NAME.match(name):
        return ("must be 3-63 characters of lowercase letters, digits, dots and hyphens, "
                "starting and ending with a letter or digit")
    if ".." in name or ".-" in name or "-." in name:
        return "must not hold two adjacent dots, or a dot beside a hyphen"
    if IP_ADDRESS.match(name):
        return "must not look like an IP address"
    if name.startswith(BUCKET_PREFIXES) or name.endswith(BUCKET_SUFFIXES):
        return (f"must not start with {', '.join(BUCKET_PREFIXES)} or end with "
                f"{', '.join(BUCKET_SUFFIXES)} (reserved by S3)")
    return ""


def _id_list(raw: Any, pattern: "re.Pattern[str]", example: str,
             report: Callable[[str], None]) -> List[str]:
    if not isinstance(raw, list) or not raw:
        report(f"is missing or empty: list your own ids, like [\"{example}\"] (subnet_ids and "
               "security_group_ids always go together)")
        return []
    bad = [item for item in raw if not isinstance(item, str) or not pattern.match(item)]
    if bad:
        report(f"not an id like {example!r}: {', '.join(map(repr, bad))}")
    if len(set(raw)) != len(raw):
        report("lists an id twice")
    return list(raw)


def _whole(raw: Any, low: int, high: int, report: Callable[[str], None]) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        span = f"must be {low}" if low == high else f"must be a whole number from {low} to {high}"
        report(f"{span}; got {raw!r}")
        return 0
    return raw
