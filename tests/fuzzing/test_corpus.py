"""The corpus (tests/data/fuzz-corpus): every input that ever broke the rule is replayed through
the real Lambda entry and must keep it now; and the replay does fail on a broken answer."""
import pytest

from fuzzing import corpus
from fuzzing.__main__ import replay
from fuzzing.lambda_worker import Request, invoke
from fuzzing.rule import Bounds, violations
from tests.support.fixtures import PNG_TINY_RGB
from tests.support.serving import serving

ENTRIES = corpus.entries()


@pytest.fixture(scope="module")
def lambda_app(demo_store):
    import app as app_module
    with serving(demo_store):
        yield app_module.app


def test_the_corpus_holds_the_inputs_the_fuzzer_found():
    assert len(ENTRIES) >= 3
    assert all(entry.meta.get("fixed") for entry in ENTRIES)  # each names its fix


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e.path.parent.name}/{e.path.stem}")
def test_given_a_corpus_entry_when_replayed_through_the_lambda_entry_then_the_rule_holds(
        lambda_app, entry):
    response, seconds = invoke(lambda_app, Request(entry.route, entry.content_type, entry.body))
    assert violations(response, seconds, 0.0, Bounds()) == [], response["body"][:300]
    assert 400 <= response["statusCode"] < 500 or response["statusCode"] == 200


def test_given_a_large_input_when_saved_then_only_its_recipe_is_kept_and_rebuilt(tmp_path):
    recipe = {"base": "nih_00000001_000_cardiomegaly.png", "mutations": ["png_ihdr_size"],
              "rng": "test"}
    body = corpus.rebuild(recipe)
    assert len(body) > corpus.MAX_ENTRY_BYTES
    corpus.save("lambda", body, "image/png", "/xray", ["example"], recipe, tmp_path)
    assert not list(tmp_path.rglob("*.bin"))  # no fixture bytes in the repository
    (entry,) = corpus.entries(tmp_path)
    assert entry.body == body and entry.content_type == "image/png"


def test_given_a_recipe_that_no_longer_rebuilds_its_bytes_when_loaded_then_it_says_so(tmp_path):
    recipe = {"base": "nih_00000001_000_cardiomegaly.png", "mutations": ["truncate"],
              "rng": "test"}
    sidecar = corpus.save("lambda", corpus.rebuild(recipe), "image/png", "/xray", ["example"],
                          recipe, tmp_path)
    sidecar.write_text(sidecar.read_text().replace('"rng": "test"', '"rng": "other"'))
    with pytest.raises(ValueError, match="no longer match"):
        corpus.entries(tmp_path)


def test_given_a_broken_answer_when_the_corpus_is_replayed_then_the_replay_fails(
        tmp_path, demo_store, capsys):
    saved = tmp_path / "corpus"
    corpus.save("lambda", PNG_TINY_RGB.read_bytes(), "image/png", "/xray", ["example"],
                corpus=saved)
    assert replay(saved, Bounds(), demo_store) == 0
    # no model store: the same upload is answered 503 ModelUnavailable, a 5xx
    assert replay(saved, Bounds(), tmp_path / "no-store") == 1
    assert "BROKE: status 503" in capsys.readouterr().out
