"""Every environment variable the function reads, in one place, with its default."""
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Tuple

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Env-var names. .chalice/config.json sets them per stage; locally the defaults apply.
EFS_ROOT = "XRAY_EFS_ROOT"              # where the EFS access point is mounted (/mnt/... on Lambda)
MODEL_PATH = "XRAY_MODEL_PATH"          # the served model's folder (manifest.json + weights)
PACKAGES_PATH = "XRAY_PACKAGES_PATH"    # torch & co. on EFS; unset = this interpreter's own
MAX_UPLOAD_BYTES = "XRAY_MAX_UPLOAD_BYTES"
MAX_PIXELS = "XRAY_MAX_PIXELS"
MIN_SIDE = "XRAY_MIN_SIDE"
# What runs the network: auto (onnxruntime when the model has an ONNX graph and onnxruntime is
# installed, else torch), onnxruntime, or torch.
BACKEND = "XRAY_BACKEND"
BACKEND_CHOICES = ("auto", "onnxruntime", "torch")
# Origins (scheme://host[:port], comma-separated) whose web pages may call the API from the
# browser. Empty (the default) = same-origin only; "*" = any origin, an explicit opt-in only.
CORS_ORIGINS = "XRAY_CORS_ORIGINS"

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        efs_root = Path(env.get(EFS_ROOT) or LOCAL_EFS_ROOT)
        packages = env.get(PACKAGES_PATH)
        return cls(
            efs_root=efs_root,
            model_path=Path(env.get(MODEL_PATH) or efs_root / "models" / "current"),
            packages_path=Path(packages) if packages else None,
            max_upload_bytes=_positive_int(env, MAX_UPLOAD_BYTES, DEFAULT_MAX_UPLOAD_BYTES),
            max_pixels=_positive_int(env, MAX_PIXELS, DEFAULT_MAX_PIXELS),
            min_side=_positive_int(env, MIN_SIDE, DEFAULT_MIN_SIDE),
            cors_origins=parse_origins(env.get(CORS_ORIGINS, "")),
            backend=_choice(env, BACKEND, BACKEND_CHOICES),
        )


def _choice(env: Mapping[str, str], name: str, choices: Tuple[str, ...]) -> str:
    value = env.get(name) or choices[0]
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


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
