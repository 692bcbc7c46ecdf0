"""The checker the contract tests rely on (tests/support/contract.py), on made-up answers to a
small document: it must refuse what the document does not allow, or a passing contract test
would mean nothing."""
import json

import pytest

from tests.support.contract import Contract, Exchange, documented_media

DOCUMENT = {
    "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
    "paths": {"/things/{id}": {"post": {"responses": {
        "200": {"description": "ok", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}},
            'multipart/related; type="application/dicom"': {
                "schema": {"type": "string", "format": "binary"}}}},
        "204": {"description": "gone"},
        "503": {"description": "down", "headers": {"Retry-After": {
            "schema": {"type": "integer", "minimum": 1}}},
            "content": {"application/json": {"schema": {
                "allOf": [{"$ref": "#/components/schemas/Error"}],
                "properties": {"Code": {"enum": ["Down"]}}}}}},
    }}}},
    "components": {"schemas": {
        "Thing": {"type": "object", "properties": {
            "n": {"type": "integer"},
            "error": {"$ref": "#/components/schemas/Error"},
            "text": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"$ref": "#/components/schemas/Error"}}},
                  "required": ["n"], "additionalProperties": False},
        "Error": {"type": "object", "properties": {"Code": {"type": "string"},
                                                   "Message": {"type": "string"}},
                  "required": ["Code", "Message"], "additionalProperties": False},
    }},
}


def answer(status: int, body, content_type: str = "application/json", **headers) -> Exchange:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Exchange("made up", "POST", "/things/{id}", status, content_type, raw,
                    {name.replace("_", "-").title(): value for name, value in headers.items()})


@pytest.fixture(scope="module")
def contract():
    return Contract(DOCUMENT)


@pytest.mark.parametrize("exchange", [
    answer(200, {"n": 1}),
    answer(200, {"n": 1, "error": {"Code": "X", "Message": "y"}}),
    answer(200, {"n": 1, "text": '{"Code": "X", "Message": "y"}'}),
    answer(200, b"--b\r\n...", 'multipart/related; type="application/dicom"; boundary=b'),
    answer(204, b""),
    answer(503, {"Code": "Down", "Message": "later"}, retry_after="3"),
], ids=["json", "nested-ref", "json-text", "multipart", "no-body", "error"])
def test_given_an_answer_the_document_allows_then_no_problem(contract, exchange):
    assert contract.check(exchange) == []


@pytest.mark.parametrize("exchange, words", [
    (answer(201, {"n": 1}), "status 201 is not documented"),
    (answer(200, {"n": 1}, "text/csv"), "'text/csv' is not documented"),
    (answer(200, b"--b", "multipart/related; type=application/pdf; boundary=b"),
     "is not documented"),
    (answer(200, {"n": "one"}), "'one' is not of type 'integer'"),
    (answer(200, {"n": 1, "more": True}), "Additional properties"),
    (answer(200, {"n": 1, "error": {"Code": "X"}}), "'Message' is a required property"),
    (answer(200, b"{not json"), "not JSON"),
    (answer(200, {"n": 1, "text": '{"Code": "X"}'}), "'Message' is a required property"),
    (answer(200, {"n": 1, "text": "{oops"}), "is not the JSON its contentMediaType says"),
    (answer(204, b"{}"), "no body"),
    (answer(503, {"Code": "Up", "Message": "?"}), "'Up' is not one of ['Down']"),
    (answer(503, {"Code": "Down", "Message": "later"}, retry_after="soon"), "Retry-After"),
], ids=["status", "media", "media-parameter", "type", "closed", "ref-required", "not-json",
        "json-text", "text-not-json", "body-for-none", "code", "header"])
def test_given_an_answer_the_document_refuses_then_the_check_says_why(contract, exchange, words):
    problems = contract.check(exchange)
    assert problems and words in " ".join(problems), problems


def test_given_a_route_the_document_lacks_then_the_check_says_so(contract):
    exchange = Exchange("made up", "GET", "/elsewhere", 200, "application/json", b"{}")
    assert "has no GET /elsewhere" in contract.check(exchange)[0]


def test_a_content_type_matches_the_key_naming_its_parameters():
    content = {"application/json": {}, 'multipart/related; type="application/dicom"': {}}
    assert documented_media(content, "application/json; charset=utf-8") == "application/json"
    assert documented_media(content, 'multipart/related; boundary=x; type="application/dicom"') \
        == 'multipart/related; type="application/dicom"'
    assert documented_media(content, "multipart/related; boundary=x") is None
