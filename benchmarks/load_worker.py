"""The locust side of `python -m benchmarks load`, in its own process: importing locust
monkey-patches the interpreter for gevent, which the other benchmarks (and the parent that
starts and stops the server) must not inherit.

    python -m benchmarks.load_worker CONFIG.json OUT.json

CONFIG names the host, users, spawn rate, duration, timeouts and the samples (format, file,
Content-Type, path). Each user posts the samples in turn (users start at different ones) with
no think time: a closed loop of `users` requests in flight. A request counts as failed unless it
answers 2xx with findings; a connection failure or timeout is a failure too. OUT holds locust's
own counts per format (its request rate over the run's window) and every request's exact time,
so the parent can compute exact percentiles per format and per file."""
import json
import sys
import time
from itertools import count
from pathlib import Path
from typing import Any, Dict, List

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment


def _poster(config: Dict[str, Any], samples: List[tuple]) -> type:
    offsets = count()

    class Poster(FastHttpUser):
        host = config["host"]
        wait_time = constant(0)
        network_timeout = connection_timeout = float(config["request_timeout_s"])

        def on_start(self) -> None:
            self.position = next(offsets)

        @task
        def post_xray(self) -> None:
            fmt, name, content_type, body = samples[self.position % len(samples)]
            self.position += 1
            with self.client.post("/xray", data=body, headers={"Content-Type": content_type},
                                  name=fmt, context={"file": name},
                                  catch_response=True) as response:
                status = response.status_code
                if not status:
                    response.failure(f"no answer: {response.error!r}")
                elif not 200 <= status < 300:
                    response.failure(f"HTTP {status}: {(response.text or '')[:200]}")
                elif not _has_findings(response.text):
                    response.failure(f"HTTP {status} without findings")
                else:
                    response.success()

    return Poster


def _has_findings(text: Any) -> bool:
    try:
        answer = json.loads(text or "")
    except ValueError:
        return False
    return isinstance(answer, dict) and "findings" in answer


def run(config: Dict[str, Any]) -> Dict[str, Any]:
    samples = [(s["format"], s["file"], s["content_type"], Path(s["path"]).read_bytes())
               for s in config["samples"]]
    requests: List[Dict[str, Any]] = []

    def record(request_type, name, response_time, response_length, exception=None,
               context=None, **_) -> None:
        requests.append({"format": name, "file": (context or {}).get("file"),
                         "ms": round(response_time, 2), "ok": exception is None})

    events.request.add_listener(record)
    env = Environment(user_classes=[_poster(config, samples)], events=events,
                      host=config["host"], stop_timeout=float(config["request_timeout_s"]))
    runner = env.create_local_runner()
    started = time.time()
    runner.start(config["users"], spawn_rate=config["spawn_rate"])
    # at the end, users finish the request they are in (stop_timeout) instead of being killed
    gevent.spawn_later(config["duration_s"], runner.quit)
    runner.greenlet.join()
    stats = env.stats
    entries = {name: _entry(entry) for (name, _), entry in stats.entries.items()}
    return {
        "started": started,
        "wall_s": round(time.time() - started, 2),
        "window_s": round((stats.last_request_timestamp or started) - (stats.start_time or started),
                          2),
        "by_format": entries,
        "total": _entry(stats.total),
        "errors": [{"format": e.name, "error": str(e.error), "occurrences": e.occurrences}
                   for e in stats.errors.values()],
        "user_exceptions": [{"count": row["count"], "msg": row["msg"]}
                            for row in runner.exceptions.values()],
        "load_generator_cpu_warning": bool(runner.cpu_warning_emitted),
        "requests": requests,
    }


def _entry(entry) -> Dict[str, Any]:
    return {"requests": entry.num_requests, "failures": entry.num_failures,
            "requests_per_s": round(entry.total_rps, 2)}


def main(argv: List[str]) -> None:
    config_path, out_path = argv
    report = run(json.loads(Path(config_path).read_text()))
    Path(out_path).write_text(json.dumps(report) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
