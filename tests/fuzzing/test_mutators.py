"""The structure-aware mutations: each one changes the file of its format where it says (so a
run really exercises what the README claims), and a recipe rebuilds the same bytes."""
import random
import struct
import zlib

import pytest

from chalicelib.imaging.formats import sniff
from fuzzing import corpus, mutators, seeds
from fuzzing.structure import make_case

BASES = {"png": "small-gray8.png", "jpeg": "small-gray.jpg", "dicom": "small-explicit-12bit.dcm",
         "j2k-dicom": "small-j2k.dcm"}


@pytest.mark.parametrize("name", sorted(mutators.MUTATORS))
def test_given_a_seed_of_its_format_when_mutated_then_some_draw_changes_the_bytes(name):
    formats, mutate = mutators.MUTATORS[name]
    base = next(seeds.load(b) for b in BASES.values()
                if formats is None or sniff(seeds.load(b)) in formats)
    if name == "dicom_fragments":
        base = seeds.load(BASES["j2k-dicom"])
    draws = 2 if name == "png_bomb" else 12  # megabytes each
    outputs = {mutate(base, random.Random(i)) for i in range(draws)}
    assert all(isinstance(out, bytes) for out in outputs)
    assert outputs - {base}, f"{name} never changed its input"


def test_given_another_format_when_a_format_mutation_runs_then_the_input_is_unchanged():
    jpeg = seeds.load(BASES["jpeg"])
    assert mutators.png_ihdr_size(jpeg, random.Random(1)) == jpeg
    assert mutators.dicom_tag_value(jpeg, random.Random(1)) == jpeg


def test_given_a_png_when_ihdr_is_resized_then_the_crc_still_matches():
    png = mutators.png_ihdr_size(seeds.load(BASES["png"]), random.Random(3))
    chunks = mutators.png_chunks(png)
    kind, body, crc = chunks[0]
    assert kind == b"IHDR" and struct.unpack(">I", crc)[0] == zlib.crc32(kind + body)
    assert body != mutators.png_chunks(seeds.load(BASES["png"]))[0][1]


def test_given_a_dicom_when_the_pixel_length_is_rewritten_then_only_that_field_changes():
    base = seeds.load(BASES["dicom"])
    out = mutators.dicom_pixel_length(base, random.Random(5))
    at = base.rfind(mutators.PIXEL_DATA_TAG)
    assert len(out) == len(base) and out[:at + 8] == base[:at + 8]
    assert out[at + 12:] == base[at + 12:] and out[at + 8:at + 12] != base[at + 8:at + 12]


def test_given_the_same_seed_and_index_when_a_case_is_made_twice_then_it_is_the_same():
    first, again = make_case(11, 42), make_case(11, 42)
    assert (first.body, first.content_type, first.route) == \
        (again.body, again.content_type, again.route)
    assert corpus.rebuild(first.recipe) == first.body
    assert make_case(11, 43).recipe != first.recipe
