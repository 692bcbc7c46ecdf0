"""The rule itself: it passes the answers the app gives for good and bad uploads, and fails
each kind of broken answer (so that the fuzzer and the corpus replay can fail at all)."""
import json

import pytest

from fuzzing.rule import Bounds, answer_label, violations

BOUNDS = Bounds(time_s=10, rss_mb=1536)


def answer(status, body) -> dict:
    return {"statusCode": status, "body": body if isinstance(body, str) else json.dumps(body)}


def test_given_a_2xx_or_a_4xx_json_error_when_checked_then_the_rule_holds():
    assert violations(answer(200, {"findings": [{"probability": 0.5}]}), 0.1, 300, BOUNDS) == []
    assert violations(answer(415, {"Code": "UnsupportedImageType", "Message": "send PNG"}),
                      0.1, 300, BOUNDS) == []


@pytest.mark.parametrize("response, broken", [
    (answer(500, {"Code": "InternalServerError", "Message": "An internal server error"}),
     "status 500"),
    (answer(502, "Bad Gateway"), "status 502"),
    (answer(200, '{"findings": [{"probability": NaN}]}'), "not strict JSON"),
    (answer(400, {"Code": "InvalidImage"}), "4xx body is not"),
    (answer(400, {"message": "bad", "Code": "X", "Message": "y"}), "4xx body is not"),
    (answer(400, "oops"), "not strict JSON"),
    (answer(400, {"Code": "X", "Message": 'Traceback (most recent call last):\n  File "/a"'}),
     "traceback"),
    (None, "no answer"),
], ids=["500", "502-text", "nan", "no-message", "extra-key", "not-json", "traceback", "none"])
def test_given_a_broken_answer_when_checked_then_the_rule_says_what_broke(response, broken):
    found = violations(response, 0.1, 300, BOUNDS)
    assert any(broken in line for line in found), found


def test_given_a_slow_or_large_answer_when_checked_then_the_bounds_are_broken():
    good = answer(200, {"findings": []})
    assert violations(good, 10.5, 300, BOUNDS) == ["took 10.50 s (bound 10 s)"]
    assert violations(good, 0.1, 2000, BOUNDS) == ["peak RSS 2000 MB (bound 1536 MB)"]


def test_given_answers_when_labelled_then_status_and_code_are_counted_apart():
    assert answer_label(answer(200, {"findings": []})) == "200"
    assert answer_label(answer(413, {"Code": "PayloadTooLarge", "Message": "m"})) == \
        "413 PayloadTooLarge"
