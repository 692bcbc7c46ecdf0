"""The EMF documents of one request: valid EMF, few bounded dimensions, one job per document."""
import pytest

from chalicelib.observability import metrics
from chalicelib.settings import METRICS_DISABLED
from tests.support.emf import check_emf, metrics_of, split_lines

BASE = dict(stage="test", route="/xray", status=200, error_code=None, total_ms=120.5,
            timings_ms={"decode": 3.0, "preprocess": 1.5, "inference": 90.0,
                        "model_load": 0.01}, upload_bytes=180_000, cold_start=False,
            image_format="png", model_load_ms=None)


def emitted(capsys, **changes) -> list:
    capsys.readouterr()
    metrics.emit_request(**{**BASE, **changes})
    documents, logs = split_lines(capsys.readouterr().out)
    assert logs == []
    for document in documents:
        check_emf(document)
        assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ChestXray"
    return documents


def test_given_a_classification_when_emitted_then_latency_per_step_bytes_status_and_format(
        capsys):
    found = metrics_of(emitted(capsys))
    route = {"stage": "test", "route": "/xray", "service": "chest-xray"}
    assert {(name, value[0]) for name, dims, value in found if dims == route} == {
        ("Latency", 120.5), ("DecodeLatency", 3.0), ("PreprocessLatency", 1.5),
        ("InferenceLatency", 90.0), ("ModelLoadLatency", 0.01), ("UploadBytes", 180_000)}
    assert ("Requests", {**route, "status_class": "2xx"}, [1.0]) in found
    assert ("DecodedImages", {"stage": "test", "format": "png", "service": "chest-xray"},
            [1.0]) in found
    assert not [name for name, _, _ in found if name in ("Errors", "ColdStart", "ModelLoadTime")]


def test_given_a_cold_start_that_loaded_the_model_when_emitted_then_both_are_counted(capsys):
    found = metrics_of(emitted(capsys, cold_start=True, model_load_ms=850.0))
    assert [value for name, _, value in found if name == "ColdStart"] == [[1.0]]
    assert [value for name, _, value in found if name == "ModelLoadTime"] == [[850.0]]


def test_given_an_error_when_emitted_then_counted_under_its_code_alone(capsys):
    found = metrics_of(emitted(capsys, status=413, error_code="PayloadTooLarge",
                               timings_ms={}, image_format=None))
    assert [dims for name, dims, _ in found if name == "Errors"] == [
        {"stage": "test", "route": "/xray", "error_code": "PayloadTooLarge",
         "service": "chest-xray"}]
    # the latency is not split by status or code: those documents hold a count only
    for name, dims, _ in found:
        assert ("error_code" in dims or "status_class" in dims) == (name in ("Errors",
                                                                             "Requests"))


@pytest.mark.parametrize("code, expected", [
    ("InvalidImage", "InvalidImage"), ("not a code!", "other"), ("", "other"),
    (None, "other"), ("A" * 65, "other")])
def test_given_an_odd_error_code_when_made_a_dimension_then_it_collapses(code, expected):
    assert metrics.dimension_value(code) == expected


def test_given_metrics_disabled_when_emitted_then_nothing_is_printed(capsys, monkeypatch):
    monkeypatch.setenv(METRICS_DISABLED, "true")
    capsys.readouterr()
    metrics.emit_request(**BASE)
    assert capsys.readouterr().out == ""
