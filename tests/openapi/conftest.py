"""Every case of cases.py run once per session, stage by stage, each answer kept with the
document its own stage served (GET /openapi.json: the jobs stage's says its job limit)."""
from dataclasses import dataclass
from typing import Dict, List

import pytest

from chalicelib.settings import CORS_ORIGINS, JOB_MAX_BYTES
from tests.openapi.cases import JOB_LIMIT, ORIGIN, Case, Stage, all_cases
from tests.support.contract import Contract, Exchange, through_client
from tests.support.serving import serving


@dataclass
class Answered:
    case: Case
    exchange: Exchange
    contract: Contract   # the document the case's stage served


def routes() -> Dict[str, Dict[str, object]]:
    import app as app_module
    return app_module.app.routes


CASES = all_cases(routes())


def run_stage(stage: Stage, cases: List[Case]) -> Dict[str, Answered]:
    served = through_client(stage.client, f"openapi ({stage.name})", "GET", "/openapi.json",
                            "/openapi.json")
    assert served.status == 200, served.body[:500]
    contract = Contract(served.json())
    return {case.name: Answered(case, case.run(stage, case.name), contract) for case in cases}


@pytest.fixture(scope="session")
def answered(demo_store, tmp_path_factory) -> Dict[str, Answered]:
    """case name -> its answer."""
    import app as app_module
    from tests.jobs.conftest import JobsApp
    from tests.support.jobs import local_jobs
    by_stage: Dict[str, List[Case]] = {}
    for case in CASES:
        by_stage.setdefault(case.stage, []).append(case)
    found: Dict[str, Answered] = {}
    with serving(demo_store) as client:
        found.update(run_stage(Stage("loading", client, app_module), by_stage["loading"]))
    with serving(demo_store, **{CORS_ORIGINS: ORIGIN}) as client:
        found.update(run_stage(Stage("main", client, app_module), by_stage["main"]))
    with local_jobs() as stack:
        with serving(demo_store, **stack.env(**{JOB_MAX_BYTES: str(JOB_LIMIT)})) as client:
            jobs = JobsApp(client=client, module=app_module, stack=stack)
            found.update(run_stage(Stage("jobs", client, app_module, jobs), by_stage["jobs"]))
    empty = tmp_path_factory.mktemp("empty-efs")
    with serving(empty) as client:
        found.update(run_stage(Stage("no_model", client, app_module), by_stage["no_model"]))
    return found
