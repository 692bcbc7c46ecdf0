"""The real answers against the document: every case's answer (status, Content-Type, headers,
body) must be one the document lists for its route, its JSON valid against the documented
schema; and every answer and error code the document lists must have been answered by some
case, so that the document promises nothing the app was not seen to do."""
import importlib.util
from typing import Any, Dict, List, Optional, Tuple

import pytest

from chalicelib.openapi.document import build
from chalicelib.reports.negotiation import DICOM_SR, FHIR
from chalicelib.settings import Settings
from tests.openapi.cases import NOT_REPRODUCIBLE
from tests.openapi.conftest import CASES, routes
from tests.support.contract import documented_media

# The report builders are written on their own branches; until they are merged here, an
# answer in their format cannot be produced
BUILDERS = {DICOM_SR: "chalicelib.reports.sr", FHIR: "chalicelib.reports.fhir"}


def missing(module: Optional[str]) -> bool:
    return module is not None and importlib.util.find_spec(module) is None


def pending(module: Optional[str]) -> List[Any]:
    if not missing(module):
        return []
    return [pytest.mark.xfail(strict=True, reason=f"{module} is not on this branch yet: after "
                                                  "the merge this runs as any other")]


@pytest.mark.parametrize("name", [pytest.param(case.name, id=case.name,
                                               marks=pending(case.needs_module))
                                  for case in CASES])
def test_given_a_case_when_the_app_answers_then_the_document_allows_its_answer(answered, name):
    got = answered[name]
    exchange = got.exchange
    assert exchange.status == got.case.status, f"{exchange}: {exchange.body[:500]!r}"
    assert got.contract.check(exchange) == []


Item = Tuple[str, str, str, str]  # (method, path, status, media type or error Code)


def documented_items(document: Dict[str, Any]) -> List[Item]:
    """Each answer's media types and each error's Codes, as the document lists them."""
    items: List[Item] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                codes = error_codes(response)
                if codes is not None:
                    items += [(method.upper(), path, status, code) for code in codes]
                else:
                    items += [(method.upper(), path, status, media)
                              for media in response.get("content", {})] or [
                        (method.upper(), path, status, "")]
    return items


def error_codes(response: Dict[str, Any]) -> Optional[List[str]]:
    """The Codes an error response lists; None for an answer that is not an error (a STOW-RS
    409 is DICOM JSON, for one)."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    codes: List[str] = []
    for alternative in schema.get("oneOf", [schema]):
        if alternative.get("allOf") == [{"$ref": "#/components/schemas/Error"}]:
            codes += alternative["properties"]["Code"]["enum"]
    return codes or None


def item_marks(item: Item) -> List[Any]:
    return pending(BUILDERS.get(item[3]))


# The document of this process's routes (as every stage serves it, less the stage's settings)
DOCUMENTED = documented_items(build(routes(), Settings.from_env(), "chest-xray"))


@pytest.mark.parametrize("item", [pytest.param(item, id=" ".join(filter(None, item)),
                                               marks=item_marks(item))
                                  for item in DOCUMENTED if item[3] not in NOT_REPRODUCIBLE])
def test_given_the_document_then_each_answer_and_error_it_lists_was_answered(answered, item):
    method, path, status, what = item
    seen = []
    for got in answered.values():
        exchange = got.exchange
        if (exchange.method, exchange.template, str(exchange.status)) != (method, path, status):
            continue
        response = got.contract.document["paths"][path][method.lower()]["responses"][status]
        if error_codes(response) is None:
            seen.append(documented_media(response.get("content", {}), exchange.content_type)
                        or "")
        else:
            seen.append(exchange.json().get("Code", ""))
    assert what in seen, f"no case was answered {method} {path} {status} {what} (seen: {seen})"


def test_given_what_no_case_can_answer_then_it_is_api_gateways_and_the_deploy_shapes_it():
    from chalicelib.openapi.gateway import ALL
    from deploy.gateway_responses import CODES
    unreproduced = {what for *_, what in DOCUMENTED if what in NOT_REPRODUCIBLE}
    # under XRAY_AUTH=none: the refusals of every route and of those with a body
    assert unreproduced == {"Throttled", "IntegrationTimeout", "RequestTooLarge"}
    assert set(NOT_REPRODUCIBLE) == {refusal.code for refusal in ALL}
    # the Codes the deploy commands give API Gateway's answers (None: its own type name)
    assert set(NOT_REPRODUCIBLE) == {code for code in CODES.values() if code}


def test_given_each_stages_document_then_it_lists_what_the_collected_one_lists(answered):
    served = {got.case.stage: got.contract.document for got in answered.values()}
    assert set(served) == {"loading", "main", "jobs", "no_model"}
    for stage, document in served.items():
        assert documented_items(document) == DOCUMENTED, stage
