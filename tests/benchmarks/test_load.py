"""The load benchmark's own logic, without a server: what counts as a model load in the
server's log, the exact percentiles, and what makes a run fail. (The command itself runs
against a real `chalice local` in tests/benchmarks/test_benchmarks.py.)"""
import json
import logging
import types

import pytest

from benchmarks import __main__ as benchmarks_main
from benchmarks import load
from chalicelib.inference.lazy import LazyModel
from tests.support.fixtures import REPO

# the request line and the audit line of the request that loaded the model
# (chalicelib/observability), which name the model and its load time but are no load line
ACCESS_LINE = "\n".join(json.dumps(line, separators=(",", ":")) for line in [
    {"level": "INFO", "location": "_finish:96", "message": "request", "service": "chest-xray",
     "event": "request", "method": "POST", "route": "/xray", "status": 200, "total_ms": 895.9,
     "timings_ms": {"decode": 130.0, "model_load": 503.3}},
    {"level": "INFO", "location": "classification:21", "message": "audit",
     "service": "chest-xray", "event": "audit", "model": {"name": "demo", "version": "3"},
     "outcome": "classified"},
    {"_aws": {"Timestamp": 1796130280746, "CloudWatchMetrics": [{
        "Namespace": "ChestXray", "Dimensions": [["stage", "route", "service"]],
        "Metrics": [{"Name": "ModelLoadTime", "Unit": "Milliseconds"}]}]},
     "stage": "dev", "route": "/xray", "service": "chest-xray", "ModelLoadTime": [503.3]}])


class FakeClassifier:
    backend = "fake"

    class manifest:
        @staticmethod
        def identity():
            return {"name": "fake", "version": "1"}

    def identity(self):
        return self.manifest.identity()


def logged_lines(caplog, load_classifier) -> list:
    with caplog.at_level(logging.INFO, logger="chalicelib.inference.lazy"):
        model = LazyModel(REPO, None, load=load_classifier)
        try:
            model.get()
            model.get()  # a second request loads nothing
        except Exception:
            pass
    return [record.getMessage() for record in caplog.records]


def test_given_the_model_logs_its_load_when_counted_plain_or_as_json_then_it_is_one(caplog):
    # given what chalicelib/inference/lazy.py really logs for one load (and two requests)
    lines = logged_lines(caplog, lambda *args: FakeClassifier())
    # when the server's output holds it as plain text, as a JSON message, and beside requests
    plain = "\n".join([ACCESS_LINE, *lines, ACCESS_LINE])
    as_json = "\n".join(json.dumps({"level": "INFO", "message": line, "service": "chest-xray"})
                        for line in lines)
    # then each counts one load, and the request, audit and metric lines count none
    assert load.count_model_loads(plain) == 1
    assert load.count_model_loads(as_json) == 1
    assert load.count_model_loads(ACCESS_LINE) == 0


def test_given_a_failed_load_when_counted_then_it_is_no_load(caplog):
    def broken(*args):
        raise OSError("EFS not mounted")
    lines = logged_lines(caplog, broken)
    assert lines and load.count_model_loads("\n".join(lines)) == 0


def test_given_times_when_percentiles_are_taken_then_they_are_nearest_rank():
    times = [float(ms) for ms in range(100, 0, -1)]  # 1..100, unordered
    assert [load.percentile(times, p) for p in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert load.percentile([7.0], 99) == 7.0 and load.percentile([], 50) is None


def locust_result(requests, total=None) -> dict:
    per_format = {fmt: {"requests": sum(r["format"] == fmt for r in requests),
                        "failures": 0, "requests_per_s": 1.0} for fmt in load.FORMATS}
    return {"window_s": 10.0, "by_format": per_format,
            "total": {"requests": len(requests) if total is None else total,
                      "requests_per_s": 3.0},
            "errors": [], "user_exceptions": [], "load_generator_cpu_warning": False,
            "requests": requests}


CONFIG = {"users": 2, "spawn_rate": 2, "duration_s": 10, "samples": [
    {"format": fmt, "file": f"a.{fmt}"} for fmt in load.FORMATS]}
HEALTH = {"model": {"state": "ready", "load_ms": 230.0, "backend": "onnxruntime"}}
ONE_LOAD = "model {'name': 'x'} loaded in 230 ms\n"


def requests(*oks) -> list:
    return [{"format": load.FORMATS[i % 3], "file": f"a.{load.FORMATS[i % 3]}", "ms": 100.0 + i,
             "ok": ok} for i, ok in enumerate(oks)]


def test_given_a_clean_run_when_reported_then_it_has_no_problems_and_a_row_per_format():
    report = load.build_report(CONFIG, locust_result(requests(True, True, True)), HEALTH,
                               ONE_LOAD, 300.0)
    assert report["problems"] == []
    assert list(report["by_format"]) == list(load.FORMATS)
    assert report["total"]["requests"] == 3 and report["model"]["loads_logged"] == 1
    text = load.table(report)
    assert "model loads: 1" in text and "server peak RSS: 300 MB" in text


@pytest.mark.parametrize("locust, health, log, expected", [
    (locust_result(requests(True, False, True)), HEALTH, ONE_LOAD, "1 of 3 requests failed"),
    (locust_result(requests(True, True, True)), HEALTH, ONE_LOAD * 2, "2 model loads, not 1"),
    (locust_result(requests(True, True, True)), HEALTH, "", "0 model loads, not 1"),
    (locust_result(requests(True, True)), HEALTH, ONE_LOAD, "no dicom request was made"),
    (locust_result(requests(True, True, True), total=4), HEALTH, ONE_LOAD,
     "locust counted 4 requests"),
    (locust_result(requests(True, True, True)), {"model": {"state": "failed"}}, ONE_LOAD,
     "/health says the model is failed"),
    (locust_result(requests(True, True, True)), HEALTH,
     ONE_LOAD + "Traceback (most recent call last):\n", "1 traceback(s)"),
], ids=["failure", "two-loads", "no-load", "format-missing", "count-mismatch", "health",
        "traceback"])
def test_given_a_bad_run_when_reported_then_the_problem_is_named(locust, health, log, expected):
    report = load.build_report(CONFIG, locust, health, log, None)
    assert any(expected in problem for problem in report["problems"]), report["problems"]
    assert f"PROBLEM: {report['problems'][0]}" in load.table(report)


def test_given_a_benchmark_with_problems_when_the_command_runs_then_it_exits_non_zero(
        tmp_path, monkeypatch, capsys):
    fake = types.SimpleNamespace(
        add_arguments=lambda parser: None,
        run=lambda args: ({"problems": ["1 of 3 requests failed"]}, "the table"))
    monkeypatch.setitem(benchmarks_main.BENCHMARKS, "fake", fake)
    with pytest.raises(SystemExit) as exit_:
        benchmarks_main.main(["fake", "--out", str(tmp_path)])
    assert exit_.value.code and "fake found problems" in str(exit_.value.code)
    assert "the table" in capsys.readouterr().out
    assert json.loads((tmp_path / "fake.json").read_text())["problems"]
