"""A bounded slice of `scripts/fuzz` (seed 1, so the same inputs every time): both modes run
the number of inputs they say, through the decoders (atheris) and the real Lambda entry, and the
rule holds for every one. The README's figures come from the full run (--runs 10000)."""
import json

import pytest

from fuzzing.__main__ import main

SLICE = 300  # split over atheris on the octet-stream target (every decoder) and the Lambda entry


@pytest.fixture(scope="module")
def sliced(demo_store, tmp_path_factory):
    work, corpus = tmp_path_factory.mktemp("fuzz-work"), tmp_path_factory.mktemp("fuzz-corpus")
    code = main(["--runs", str(SLICE), "--seed", "1", "--targets", "octet-stream",
                 "--work", str(work), "--corpus", str(corpus), "--efs-root", str(demo_store)])
    summary = json.loads((work / "summary.json").read_text())
    print(f"fuzz slice: {summary['seconds']} s at load average {summary['load_average'][0]}")
    return code, summary, corpus


def test_given_a_seeded_slice_when_fuzzed_then_every_input_kept_the_rule(sliced):
    code, summary, corpus = sliced
    broken = [v for target in summary["targets"] for v in target["violations"]]
    assert broken == [] and code == 0
    assert list(corpus.rglob("*.json")) == []  # nothing saved: nothing broke


def test_given_a_seeded_slice_when_fuzzed_then_both_modes_ran_the_inputs_they_say(sliced):
    _, summary, _ = sliced
    targets = {t["target"]: t for t in summary["targets"]}
    assert set(targets) == {"decode-octet-stream", "lambda"}
    for target in targets.values():
        assert target["inputs"] == SLICE // 2
        assert sum(target["answers"].values()) == SLICE // 2  # every input got an answer
    # the Lambda slice reached every format and both outcomes, not just one refusal
    lam = targets["lambda"]
    assert {"png", "jpeg", "dicom"} <= set(lam["extra"]["by_format"])
    assert lam["answers"].get("200", 0) > 0 and lam["answers"].get("400 InvalidImage", 0) > 0
    assert lam["extra"]["worker_starts"] == 1
    atheris = targets["decode-octet-stream"]
    assert atheris["extra"]["libfuzzer_exit"] == 0 and atheris["extra"]["coverage"] > 0
    assert atheris["answers"].get("decoded", 0) > 0
