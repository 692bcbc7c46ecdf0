"""Given an Accept header, when a route negotiates its result format (reports/negotiation.py),
then the preferred offered type is chosen by RFC 9110's rules, and a header naming none of them
is a 406 that lists what is offered."""
import pytest

from chalicelib.errors import NotAcceptable
from chalicelib.reports.negotiation import DICOM_SR, FHIR, JSON, negotiate


@pytest.mark.parametrize("accept, chosen", [
    (None, JSON),
    ("", JSON),
    ("*/*", JSON),                                   # curl's and fetch()'s default
    ("application/json", JSON),
    ("application/dicom", DICOM_SR),
    ("application/fhir+json", FHIR),
    ("application/fhir+json; fhirVersion=4.0", FHIR),
    ("APPLICATION/DICOM", DICOM_SR),
    ("application/dicom, */*", DICOM_SR),            # the specific range beats */*
    ("application/fhir+json;q=0.9, */*", JSON),      # a higher q beats specificity
    ("application/*", JSON),
    ("application/json;q=0, application/*", FHIR),    # the SR is not first: the text one
    ("image/png, */*;q=0.1", JSON),
    ("application/dicom;q=0.8, application/fhir+json;q=0.5", DICOM_SR),
    ("application/dicom;q=bogus, application/json", JSON),
])
def test_given_an_accept_header_then_the_preferred_offered_type(accept, chosen):
    assert negotiate(accept) == chosen


@pytest.mark.parametrize("accept", ["text/html", "application/dicom;q=0", "image/*",
                                    "application/xml, text/csv"])
def test_given_nothing_offered_is_acceptable_then_406_listing_the_types(accept):
    with pytest.raises(NotAcceptable) as raised:
        negotiate(accept)
    assert raised.value.STATUS_CODE == 406
    assert all(media in str(raised.value) for media in (JSON, DICOM_SR, FHIR))


def test_given_a_route_offering_one_type_then_only_that_one_is_acceptable():
    assert negotiate("*/*", (JSON,)) == JSON
    with pytest.raises(NotAcceptable):
        negotiate("application/dicom", (JSON,))


@pytest.mark.parametrize("accept, chosen", [
    ("application/json;q=0.5, application/dicom", JSON),       # the SR would reach it as text
    ("application/fhir+json;q=0.1, application/dicom", FHIR),
    ("*/*;q=0.1, application/dicom", JSON),
    ("application/dicom, application/json;q=0.5", DICOM_SR),   # first: API Gateway sends bytes
])
def test_given_the_sr_preferred_but_not_first_then_the_best_text_format(accept, chosen):
    assert negotiate(accept) == chosen


def test_given_only_the_sr_and_not_first_then_406_saying_to_put_it_first():
    with pytest.raises(NotAcceptable) as raised:
        negotiate("text/html, application/dicom")
    assert "first media type" in str(raised.value) and "put application/dicom first" in str(
        raised.value)
