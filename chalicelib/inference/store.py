"""The model store: one folder per model version holding manifest.json and safetensors weights,
laid out as on EFS:

    <efs root>/models/<name>/<version>/manifest.json
    <efs root>/models/<name>/<version>/model.safetensors
    <efs root>/models/current -> <name>/<version>      (the served version)

Reading needs only the standard library; the weights themselves are read by
inference.classifier.load_classifier, through read_file, once: what is hashed is what runs.
Writing a version is the tools' job (vendor_efs/models/writer.py): serving never writes a model.
"""
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "chest-xray-model/1"
CURRENT = "current"
# Optional: {"coarsest_level": <int >= 0>, "min_side": <int >= the input size, optional>}, how
# far reduced decoding may go for this model (Manifest.coarsest_level, .reduced_min_side)
REDUCED_DECODING = "reduced_decoding"
REDUCED_MIN_SIDE_FACTOR = 2


class ManifestError(ValueError):
    """The store does not hold a usable manifest; the message says what to fix."""


@dataclass(frozen=True)
class Manifest:
    directory: Path
    raw: Dict[str, Any]

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def version(self) -> str:
        return str(self.raw["version"])

    @property
    def trained(self) -> bool:
        return bool(self.raw["trained"])

    @property
    def architecture(self) -> Dict[str, Any]:
        return self.raw["architecture"]

    @property
    def labels(self) -> List[str]:
        return list(self.raw["labels"])

    @property
    def thresholds(self) -> Dict[str, float]:
        return {label: float(t) for label, t in self.raw["thresholds"].items()}

    @property
    def input_size(self) -> int:
        return int(self.raw["input"]["size"])

    @property
    def preprocessing(self) -> Dict[str, Any]:
        return self.raw["preprocessing"]

    @property
    def weights_path(self) -> Path:
        return self.directory / self.raw["weights"]["file"]

    @property
    def sha256(self) -> str:
        return self.raw["weights"]["sha256"]

    @property
    def onnx(self) -> Optional[Dict[str, Any]]:
        return self.raw.get("onnx")

    @property
    def coarsest_level(self) -> int:
        """The coarsest resolution level (1/2^level of each side) the model accepts its input
        decoded at, where the stage opts in to reduced decoding (XRAY_REDUCED_DECODING); 0 (the
        default, the key absent) = every pixel, always."""
        return int(self.raw.get(REDUCED_DECODING, {}).get("coarsest_level", 0))

    @property
    def reduced_min_side(self) -> int:
        """The short side below which no coarser level is decoded: the manifest's
        reduced_decoding.min_side, by default twice the input side (below that, a level loses
        detail the full image's resize keeps: the README's fidelity table)."""
        return int(self.raw.get(REDUCED_DECODING, {}).get(
            "min_side", REDUCED_MIN_SIDE_FACTOR * self.input_size))

    @property
    def accepts(self) -> Dict[str, List[str]]:
        """What images the model was made for (inference/intended_use.py; its defaults for
        what the manifest leaves out)."""
        from chalicelib.inference.intended_use import DEFAULT_ACCEPTS
        return {**DEFAULT_ACCEPTS, **self.raw.get("accepts", {})}

    def identity(self) -> Dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256,
                "trained": self.trained}


def read_manifest(model_path: Path) -> Manifest:
    """Reads and validates the manifest of the model at model_path (a pointer is resolved once,
    so a pointer switched meanwhile cannot mix two versions)."""
    directory = Path(os.path.realpath(model_path))
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"no model at {model_path} ({MANIFEST_NAME} not found).")
    try:
        raw = json.loads(read_file(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path} is not valid JSON: {error}") from None
    validate_manifest(raw, path)
    return Manifest(directory, raw)


def validate_manifest(raw: Any, path: Path) -> None:
    """Raises ManifestError naming the first problem of a manifest read from (or for) path."""
    def need(condition: bool, what: str) -> None:
        if not condition:
            raise ManifestError(f"{path}: {what}")

    need(isinstance(raw, dict), "must be a JSON object")
    need(raw.get("format") == MANIFEST_FORMAT, f'"format" must be "{MANIFEST_FORMAT}"')
    for key in ("name", "version", "trained", "architecture", "labels", "thresholds", "input",
                "preprocessing", "weights", "provenance"):
        need(key in raw, f'"{key}" is missing')
    labels = raw["labels"]  # one per model output; "" marks an output that was not trained
    need(isinstance(labels, list) and all(isinstance(x, str) for x in labels)
         and any(labels), '"labels" must be a list of output names, at least one non-empty')
    named = [label for label in labels if label]
    need(len(set(named)) == len(named), '"labels" has duplicates')
    thresholds = raw["thresholds"]
    need(isinstance(thresholds, dict) and set(thresholds) == set(named),
         '"thresholds" must map every label, and only labels, to a threshold')
    need(all(isinstance(t, (int, float)) and 0 <= t <= 1 for t in thresholds.values()),
         'every threshold must be a number between 0 and 1')
    weights = raw["weights"]
    need(isinstance(weights, dict) and weights.get("format") == "safetensors",
         '"weights.format" must be "safetensors" (pickled weights are never loaded)')
    need(isinstance(weights.get("file"), str) and "/" not in weights["file"],
         '"weights.file" must be a file name in the model folder')
    need(_is_sha256(weights.get("sha256")), '"weights.sha256" must be 64 lowercase hex digits')
    need(isinstance(raw["architecture"], dict) and "name" in raw["architecture"],
         '"architecture.name" is missing')
    onnx = raw.get("onnx")  # optional: the graph for the onnxruntime backend
    need(onnx is None or (isinstance(onnx, dict) and isinstance(onnx.get("file"), str)
                          and "/" not in onnx["file"] and _is_sha256(onnx.get("sha256"))),
         '"onnx" needs a "file" in the model folder and its "sha256"')
    feature_map = (onnx or {}).get("feature_map")  # optional: the graph's Grad-CAM output
    if feature_map is not None:
        from chalicelib.inference.architectures.registry import HEADS
        head = HEADS.get(raw["architecture"]["name"])
        need(isinstance(feature_map, dict) and isinstance(feature_map.get("output"), str)
             and feature_map["output"] and isinstance(feature_map.get("layer"), str),
             '"onnx.feature_map" needs the graph\'s "output" name and the "layer" it holds')
        need(head is None or feature_map["layer"] == head.layer,  # unknown: the loader says
             f'"onnx.feature_map.layer" must be this architecture\'s Grad-CAM layer '
             f'({head.layer if head else ""}), not {feature_map["layer"]!r}: re-import the '
             f'model')
    model_input = raw["input"]
    need(isinstance(model_input, dict) and isinstance(model_input.get("size"), int)
         and model_input["size"] > 0 and model_input.get("channels") in (1, 3),
         '"input" needs an integer "size" and "channels" (1 or 3)')
    if "accepts" in raw:  # optional: the modalities, body parts and views the model reads
        from chalicelib.inference.intended_use import validate_accepts
        problem = validate_accepts(raw["accepts"])
        need(not problem, problem)
    if REDUCED_DECODING in raw:
        reduced = raw[REDUCED_DECODING]
        fields = reduced if isinstance(reduced, dict) else {}
        side = fields.get("min_side", model_input.get("size"))
        need(isinstance(reduced, dict) and "coarsest_level" in fields
             and set(fields) <= {"coarsest_level", "min_side"}
             and _whole(fields["coarsest_level"], 0) and _whole(side, model_input.get("size")),
             f'"{REDUCED_DECODING}" must be {{"coarsest_level": <a whole number, 0 or more>}} '
             f'(0 = always decode every pixel), with an optional "min_side": <a whole number, '
             f'at least the input size>')
    prep = raw["preprocessing"]
    need(isinstance(prep, dict) and isinstance(prep.get("recipe"), str),
         '"preprocessing" needs a "recipe" name')


def _whole(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(
        c in "0123456789abcdef" for c in value)


def safetensors_layout(weights: bytes) -> Dict[str, Tuple[str, List[int], int, int]]:
    """name -> (dtype, shape, absolute offset, length) inside a safetensors file's bytes: an
    8-byte little-endian header size, a JSON header, then the tensors' bytes."""
    (header_size,) = struct.unpack("<Q", weights[:8])
    header = json.loads(weights[8:8 + header_size])
    header.pop("__metadata__", None)
    start = 8 + header_size
    return {name: (info["dtype"], info["shape"], start + info["data_offsets"][0],
                   info["data_offsets"][1] - info["data_offsets"][0])
            for name, info in header.items()}


def read_file(path: Path) -> bytes:
    """A store file's bytes, or a ManifestError saying why they cannot be read."""
    try:
        return path.read_bytes()
    except OSError as error:
        hint = (" (the function's EFS access point user must be able to read the model folder)"
                if isinstance(error, PermissionError) else " (re-install the model version)")
        raise ManifestError(f"cannot read {path}: {error.strerror or error}{hint}") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def point_current(models_root: Path, version_dir: Path) -> None:
    """Makes version_dir the served model by swapping the `current` symlink atomically."""
    link = models_root / CURRENT
    temporary = models_root / f".{CURRENT}.{os.getpid()}"
    if temporary.is_symlink():
        temporary.unlink()
    os.symlink(os.path.relpath(version_dir, models_root), temporary)
    os.replace(temporary, link)
