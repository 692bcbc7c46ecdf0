"""The rule every answer to an upload must keep, whatever the bytes: a 2xx with a strict JSON
body, or a 4xx whose body is exactly Chalice's error shape {"Code": ..., "Message": ...}; no
5xx, no traceback text, no answer slower than the time bound, no process larger than the memory
bound. Strict JSON because a browser's JSON.parse refuses the NaN that Python's json writes."""
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

# Per input. The function's own timeout is 28 s and API Gateway gives up at 29 s; the slowest
# shared radiograph (the JPEG 2000 one) takes well under a second here, so an input 10x slower
# than any legitimate one is a bug even on a busy machine.
DEFAULT_TIME_BOUND_S = 10.0
# Peak RSS of the process answering. The function has 3008 MB; a decoded image at the pixel
# limit (XRAY_MAX_PIXELS) with its float32 copies fits well under half of it.
DEFAULT_RSS_BOUND_MB = 1536
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/')


@dataclass(frozen=True)
class Bounds:
    time_s: float = DEFAULT_TIME_BOUND_S
    rss_mb: int = DEFAULT_RSS_BOUND_MB


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constants)


def answer_label(response: Dict[str, Any]) -> str:
    """"200", "415 UnsupportedImageType", "500 ..." : how the figures count answers."""
    status = response.get("statusCode")
    try:
        code = strict_json(response.get("body") or "").get("Code")
    except (ValueError, AttributeError):
        code = None
    return f"{status} {code}" if code else str(status)


def violations(response: Optional[Dict[str, Any]], seconds: float, rss_mb: float,
               bounds: Bounds) -> List[str]:
    """What about this answer breaks the rule; [] when it holds. response None = no answer."""
    broken = []
    if seconds > bounds.time_s:
        broken.append(f"took {seconds:.2f} s (bound {bounds.time_s:g} s)")
    if rss_mb > bounds.rss_mb:
        broken.append(f"peak RSS {rss_mb:.0f} MB (bound {bounds.rss_mb} MB)")
    if response is None:
        return broken + ["no answer"]
    status, body = response.get("statusCode"), response.get("body")
    if not isinstance(status, int) or not (200 <= status < 300 or 400 <= status < 500):
        broken.append(f"status {status}")
    if not isinstance(body, str):
        return broken + ["body is not text"]
    if any(marker in body for marker in TRACEBACK_MARKERS):
        broken.append("traceback text in the body")
    try:
        parsed = strict_json(body)
    except ValueError as error:
        return broken + [f"body is not strict JSON ({str(error)[:80]})"]
    if isinstance(status, int) and 400 <= status < 500:
        if not (isinstance(parsed, dict) and set(parsed) == {"Code", "Message"}
                and all(isinstance(v, str) and v for v in parsed.values())):
            broken.append("4xx body is not {\"Code\": ..., \"Message\": ...}")
    return broken
