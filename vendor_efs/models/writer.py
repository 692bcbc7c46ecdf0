"""Writes one model version into a store (for the tools that fill a store: the demo model and
the importer; serving only reads, through chalicelib.inference.store)."""
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

from chalicelib.inference.store import MANIFEST_FORMAT, MANIFEST_NAME, sha256_hex, validate_manifest


def write_model(models_root: Path, manifest: Dict[str, Any], weights: bytes,
                onnx_graph: Optional[bytes] = None) -> Path:
    """Writes one model version (for the tools that fill a store, never for serving). The
    folder is assembled under a temporary name and renamed into place, so a reader sees either
    no version or a complete one."""
    target = models_root / manifest["name"] / str(manifest["version"])
    manifest = {**manifest, "format": MANIFEST_FORMAT}
    manifest["weights"] = {**manifest["weights"], "format": "safetensors",
                           "sha256": sha256_hex(weights)}
    if onnx_graph is not None:
        manifest["onnx"] = {**manifest["onnx"], "sha256": sha256_hex(onnx_graph)}
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    staging.mkdir(parents=True)
    (staging / manifest["weights"]["file"]).write_bytes(weights)
    if onnx_graph is not None:
        (staging / manifest["onnx"]["file"]).write_bytes(onnx_graph)
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    validate_manifest(manifest, staging / MANIFEST_NAME)
    os.rename(staging, target)
    return target
