"""The corpus of inputs that once broke the rule (tests/data/fuzz-corpus/<target>/): each entry
is <sha>.json (content type, route, what broke, sha256) beside either its bytes (<sha>.bin, when
small) or a recipe (seed name, mutations, RNG seed) that rebuilds them from the shared
radiographs, which are never copied into the repository. The tests replay every entry."""
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from chalicelib.settings import PROJECT_ROOT

CORPUS = PROJECT_ROOT / "tests" / "data" / "fuzz-corpus"
MAX_ENTRY_BYTES = 16 * 1024  # larger inputs are kept as recipes


@dataclass
class Entry:
    path: Path  # the .json sidecar
    body: bytes
    content_type: str
    route: str
    meta: Dict[str, Any]


def rebuild(recipe: Dict[str, Any]) -> bytes:
    from fuzzing import mutators, seeds
    return mutators.apply(seeds.load(recipe["base"]), list(recipe["mutations"]),
                          random.Random(recipe["rng"]))


def save(target: str, body: bytes, content_type: str, route: str, broke: List[str],
         recipe: Optional[Dict[str, Any]] = None, corpus: Path = CORPUS) -> Path:
    """Keeps one breaking input; the path of its sidecar."""
    digest = hashlib.sha256(body).hexdigest()
    folder = corpus / target
    folder.mkdir(parents=True, exist_ok=True)
    meta: Dict[str, Any] = {"content_type": content_type, "route": route, "broke": broke,
                            "sha256": digest, "size": len(body)}
    if len(body) <= MAX_ENTRY_BYTES or recipe is None:
        (folder / f"{digest[:16]}.bin").write_bytes(body)
    if recipe is not None:
        meta["recipe"] = recipe
    sidecar = folder / f"{digest[:16]}.json"
    sidecar.write_text(json.dumps(meta, indent=1) + "\n")
    return sidecar


def entries(corpus: Path = CORPUS) -> List[Entry]:
    """Every entry, its bytes read or rebuilt and checked against the sha256 it was saved with."""
    found = []
    for sidecar in sorted(corpus.glob("*/*.json")):
        meta = json.loads(sidecar.read_text())
        stored = sidecar.with_suffix(".bin")
        body = stored.read_bytes() if stored.exists() else rebuild(meta["recipe"])
        if hashlib.sha256(body).hexdigest() != meta["sha256"]:
            raise ValueError(f"{sidecar}: the bytes no longer match the sha256 it was saved with "
                             f"(a seed or mutation changed): re-record the entry")
        found.append(Entry(sidecar, body, meta["content_type"], meta["route"], meta))
    return found
