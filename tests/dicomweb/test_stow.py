"""chalicelib/dicomweb/stow.py's own rules, without the model: Accept negotiation, what is read of
an instance's identity, the time budget, and what may be logged of a request."""
import warnings

import pytest

from chalicelib.dicomweb import stow
from chalicelib.errors import NotAcceptable
from chalicelib.service import Classification
from tests.support.dicom_factory import make_dicom
from tests.support.fixtures import DCM_J2K, DCM_MONO2, PNG_CARDIOMEGALY
from tests.support.stow import CONTENT_TYPE, body_of, uids_of


@pytest.mark.parametrize("accept, chosen", [
    (None, "application/dicom+json"),
    ("", "application/dicom+json"),
    ("*/*", "application/dicom+json"),
    ("application/*", "application/dicom+json"),
    ("application/dicom+json", "application/dicom+json"),
    ('multipart/related; type="application/dicom"', "multipart/related"),
    ("multipart/related;type=application/dicom", "multipart/related"),
    ("multipart/related", "multipart/related"),
    ('multipart/related; type="application/dicom", application/dicom+json;q=0.5',
     "multipart/related"),
    # preferred, but not first: API Gateway would send the SRs as base64 text
    ('application/dicom+json;q=0.5, multipart/related; type="application/dicom"',
     "application/dicom+json"),
    ('multipart/related; type="application/dicom+json", */*;q=0.1', "application/dicom+json"),
])
def test_given_an_accept_then_the_format_it_asks_for(accept, chosen):
    assert stow.negotiate(accept) == chosen


@pytest.mark.parametrize("accept", [
    "application/json", "application/dicom", "application/dicom+xml", "image/*",
    'multipart/related; type="application/dicom+xml"', "application/dicom+json;q=0",
])
def test_given_an_accept_we_do_not_answer_in_then_not_acceptable(accept):
    with pytest.raises(NotAcceptable) as raised:
        stow.negotiate(accept)
    assert accept in str(raised.value)


@pytest.mark.parametrize("accept", ["multipart/*", 'image/png, multipart/related; type='
                                                   '"application/dicom"'])
def test_given_the_srs_asked_for_but_not_first_then_406_saying_to_put_them_first(accept):
    with pytest.raises(NotAcceptable) as raised:
        stow.negotiate(accept)
    assert "first media type" in str(raised.value)


def test_given_a_dicom_then_its_uids_and_transfer_syntax_are_read():
    data = DCM_J2K.read_bytes()
    identity = stow.identify(data)
    assert identity.readable
    assert (identity.sop_class, identity.sop_instance, identity.study) == uids_of(data)
    assert identity.transfer_syntax == "1.2.840.10008.1.2.4.91"


@pytest.mark.parametrize("data", [PNG_CARDIOMEGALY.read_bytes(), b"", b"\0" * 132,
                                  DCM_MONO2.read_bytes()[128:]],
                         ids=["png", "empty", "bare-preamble", "no-preamble"])
def test_given_bytes_that_are_not_dicom_then_nothing_is_read(data):
    assert stow.identify(data) == stow.Identity()


def test_given_uids_that_are_not_uids_then_they_are_not_echoed():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of the bad UID as it writes it
        data = make_dicom(None, SOPInstanceUID="PHIMARK not a UID", StudyInstanceUID="1.2.3")
    identity = stow.identify(data)
    assert identity.readable and identity.sop_instance is None and identity.study == "1.2.3"


class FakeService:
    """Classifies anything (unit test only); the clock moves on by `seconds` per call."""

    def __init__(self, clock: list, seconds: float) -> None:
        self.clock, self.seconds, self.calls = clock, seconds, 0

    def classify(self, body, content_type, deadline=None, force=False):
        self.calls += 1
        self.clock[0] += self.seconds
        return Classification({"findings": [], "timings_ms": {"decode": 1.5, "inference": 2}})


def test_given_instances_past_the_time_budget_then_they_fail_out_of_resources():
    clock = [0.0]
    service = FakeService(clock, seconds=12)
    instances = [DCM_MONO2.read_bytes()] * 4
    outcomes = stow.store(service, body_of(instances), CONTENT_TYPE, max_bytes=10 ** 8,
                          budget_s=20, clock=lambda: clock[0])
    # 0 s: tried; 12 s: tried; 24 s: over 20 s, the rest are not tried
    assert service.calls == 2
    assert [outcome.reason for outcome in outcomes] == [None, None, 0xA700, 0xA700]
    assert outcomes[2].error["Code"] == "OutOfTime" and "again" in outcomes[2].error["Message"]
    assert stow.status_code(outcomes) == 202


def test_given_a_budget_spent_before_the_first_instance_then_the_first_is_still_tried():
    clock = [100.0]
    service = FakeService(clock, seconds=0)
    outcomes = stow.store(service, body_of([DCM_MONO2.read_bytes()]), CONTENT_TYPE,
                          max_bytes=10 ** 8, budget_s=-1, clock=lambda: clock[0])
    assert service.calls == 1 and outcomes[0].classified


def test_the_notes_count_and_sum_but_name_no_instance():
    clock = [0.0]
    body = body_of([DCM_MONO2.read_bytes(), b"x", DCM_J2K.read_bytes(), ("image/png", b"y")])
    outcomes = stow.store(FakeService(clock, 0), body, CONTENT_TYPE, max_bytes=10 ** 8)
    notes = stow.notes(outcomes)
    assert notes == {"timings_ms": {"decode": 4.5, "inference": 6.0},
                     "stow": {"instances": 4, "classified": 3,
                              "failure_reasons": {"0xC000": 1}}}


def test_given_srs_asked_for_then_their_making_counts_against_the_budget(monkeypatch):
    import sys
    import types
    clock = [0.0]

    def build_sr(answer, header, uid_seed):   # a slow SR builder (unit test only)
        clock[0] += 15
        return b"SR"
    monkeypatch.setitem(sys.modules, "chalicelib.reports.sr",
                        types.SimpleNamespace(build_sr=build_sr))
    service = FakeService(clock, seconds=1)
    outcomes = stow.store(service, body_of([DCM_MONO2.read_bytes()] * 3), CONTENT_TYPE,
                          max_bytes=10 ** 8, reports=True, budget_s=20, clock=lambda: clock[0])
    # 0 s: classified, SR done at 16 s; 16 s: classified, SR done at 32 s; then out of time
    assert [outcome.report for outcome in outcomes] == [b"SR", b"SR", None]
    assert outcomes[2].reason == 0xA700 and service.calls == 2
