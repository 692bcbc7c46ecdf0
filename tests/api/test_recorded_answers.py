"""Given every shared fixture, when the service answers it on this platform (Python, numpy,
onnxruntime, torch, Pillow as pinned now), then the answer is the one recorded before the last
platform move (tests/data/answers.json says on what): the same findings in the same order, each
probability within 1e-5, and the same description of the image. A platform move that changes
what a radiograph is answered fails here; re-record only for a deliberate change of model or
behaviour (`python -m tests.support.answers tests/data/answers.json`)."""
import json

import pytest

from tests.support.answers import BACKENDS, answers
from tests.support.fixtures import ALL_FIXTURES, REPO

RECORDED = json.loads((REPO / "tests" / "data" / "answers.json").read_text())


@pytest.fixture(scope="module")
def now(demo_store) -> dict:
    return answers(demo_store)


def test_the_record_covers_every_fixture_and_backend():
    assert set(RECORDED["answers"]) == set(BACKENDS)
    for backend in BACKENDS:
        assert set(RECORDED["answers"][backend]) == {path.name for path in ALL_FIXTURES}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [path.name for path in ALL_FIXTURES])
def test_given_a_fixture_then_the_answer_is_the_recorded_one(now, backend, name):
    recorded, answer = RECORDED["answers"][backend][name], now[backend][name]
    assert [f["label"] for f in answer["findings"]] == [f["label"] for f in recorded["findings"]]
    for got, want in zip(answer["findings"], recorded["findings"]):
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-5), got["label"]
        assert got["threshold"] == want["threshold"]
    rest = {key: value for key, value in answer.items() if key != "findings"}
    assert rest == {key: value for key, value in recorded.items() if key != "findings"}
