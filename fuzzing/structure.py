"""The structure-aware mode: input i of a run with seed S is a shared radiograph (or a small
image derived from one) with one to three mutations from mutators.py, a Content-Type (mostly the
right one, sometimes octet-stream, sometimes wrong or malformed) and a route, all drawn from
random.Random(f"{S}:{i}"); each goes through the real Lambda entry in a worker process and its
answer is checked against the rule."""
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from chalicelib.imaging.formats import ROUTE_CONTENT_TYPES, sniff
from fuzzing import corpus, mutators, seeds
from fuzzing.lambda_worker import Request, Worker
from fuzzing.rule import Bounds, answer_label, violations

TARGET = "lambda"
# Not accepted by the route (Chalice's own 415), malformed, or with parameters.
ODD_CONTENT_TYPES = ("", "image/*", "text/plain", "image/gif", "image/png; charset=binary",
                     "IMAGE/PNG", "application/dicom; transfer-syntax=*", "image/jpeg, image/png",
                     "application/json", "\u00e9/\u00e9", "image/" + "x" * 300)
HEAVY = {"pad_to_limit": 0.01, "png_bomb": 0.004}  # their share of draws: megabytes each
ROUTES = (("/xray", 0.8), ("/preview", 0.2))


@dataclass
class Case:
    index: int
    route: str
    content_type: str
    recipe: Dict[str, Any]
    body: bytes = b""


def make_case(seed: int, index: int) -> Case:
    rng = random.Random(f"{seed}:{index}")
    pool = seeds.names("fixtures") if rng.random() < 0.7 else seeds.names("small")
    base = rng.choice(pool)
    original = seeds.load(base)
    choices = [name for name in mutators.applicable(original) if name not in HEAVY]
    names = [rng.choice(choices) for _ in range(rng.choice((1, 1, 2, 3)))]
    for heavy, share in HEAVY.items():
        if rng.random() < share:
            names = [heavy]
    draw = rng.random()
    right = seeds.content_type_of(original)
    if draw < 0.7:
        content_type = right
    elif draw < 0.82:
        content_type = "application/octet-stream"
    elif draw < 0.92:
        content_type = rng.choice([t for t in ROUTE_CONTENT_TYPES if t != right])
    else:
        content_type = rng.choice(ODD_CONTENT_TYPES)
    route = "/xray" if rng.random() < ROUTES[0][1] else "/preview"
    recipe = {"base": base, "mutations": names, "rng": f"{seed}:{index}:bytes"}
    return Case(index, route, content_type, recipe, corpus.rebuild(recipe))


@dataclass
class Result:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    answers: Dict[str, int] = field(default_factory=dict)
    slowest_s: float = 0.0
    slowest: str = ""
    peak_rss_mb: float = 0.0
    violations: List[Dict[str, Any]] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)
    busy_seconds: float = 0.0  # of seconds, those spent on inputs (atheris: after instrumenting)

    @property
    def execs_per_s(self) -> float:
        spent = self.busy_seconds or self.seconds
        return self.inputs / spent if spent else 0.0


def run(runs: int, seed: int, bounds: Bounds, efs_root: Path, corpus_dir: Optional[Path],
        progress: Callable[[str], None] = lambda line: None,
        log_path: Optional[Path] = None) -> Result:
    """runs inputs through the Lambda entry; violations are saved to corpus_dir (None: not
    saved) and listed in the result."""
    result = Result(TARGET)
    worker = Worker(efs_root, log_path)
    kill_after = max(3 * bounds.time_s, bounds.time_s + 20)
    started = time.perf_counter()
    by_format: Dict[str, int] = {}
    try:
        for index in range(runs):
            case = make_case(seed, index)
            found = sniff(case.body) or "other"
            by_format[found] = by_format.get(found, 0) + 1
            reply = worker.ask(Request(case.route, case.content_type, case.body), kill_after)
            label = answer_label(reply.response) if reply.response else reply.failure
            result.answers[label] = result.answers.get(label, 0) + 1
            result.inputs += 1
            if reply.seconds > result.slowest_s:
                result.slowest_s = reply.seconds
                result.slowest = f"{case.recipe['base']} + {'+'.join(case.recipe['mutations'])}"
            result.peak_rss_mb = max(result.peak_rss_mb, reply.rss_mb)
            broke = violations(reply.response, reply.seconds, reply.rss_mb, bounds)
            if reply.failure:
                broke.append(reply.failure)
            if broke:
                saved = None
                if corpus_dir is not None:
                    saved = corpus.save(TARGET, case.body, case.content_type, case.route, broke,
                                        case.recipe, corpus_dir)
                result.violations.append({"index": index, "broke": broke, "recipe": case.recipe,
                                          "content_type": case.content_type,
                                          "route": case.route, "saved": str(saved or "")})
                progress(f"fuzz: {TARGET} input {index} broke the rule: {'; '.join(broke)}")
                if reply.rss_mb > bounds.rss_mb:
                    worker.stop()  # a fresh worker, so that its peak RSS is measured anew
            if (index + 1) % 500 == 0:
                progress(f"fuzz: {TARGET} {index + 1}/{runs} inputs, "
                         f"{(index + 1) / (time.perf_counter() - started):.0f}/s")
    finally:
        worker.stop()
    result.seconds = time.perf_counter() - started
    result.extra = {"by_format": by_format, "worker_starts": worker.starts,
                    "worker_log": str(worker.log_path)}
    return result
