"""The API key, usage plan and their association for a stage whose XRAY_AUTH has api_key.

Chalice only marks routes `api_key_required`; API Gateway then admits a request only with a key
that a usage plan bound to the stage holds, and Chalice makes neither (FIELD_NOTES). After
`chalice deploy`, this finds or creates, by name (<app>-<stage>):
- the API key (enabled; a key someone disabled is left disabled: that is how a key is revoked),
- the usage plan with the stage's throttle and quota (`usage_plan` in .chalice/config.json),
  bound to the REST API's stage, and updated when the config changed,
- the key's membership of the plan.
A second run with nothing changed sends no create or update. The key's value is never read or
logged here: the log names the key id and the command that prints the value.

An API key identifies a caller; it does not protect the API (anyone holding the key, which
travels in a header, is admitted). Combine it with iam or cognito for protection.
"""
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

from deploy.errors import DeployError
from deploy.settings import StageSettings, UsagePlan

log = logging.getLogger("deploy")


@dataclass
class KeyResult:
    key_id: str
    created: List[str] = field(default_factory=list)  # "api key", "usage plan", "association"
    updated: List[str] = field(default_factory=list)


def read_value_command(key_id: str) -> str:
    return (f"aws apigateway get-api-key --api-key {key_id} --include-value "
            "--query value --output text")


def _pages(call: Any, **kwargs: Any) -> Iterator[Dict[str, Any]]:
    position: Optional[str] = None
    while True:
        page = call(**kwargs, **({"position": position} if position else {}))
        yield from page.get("items", [])
        position = page.get("position")
        if not position:
            return


def _one_named(items: List[Dict[str, Any]], name: str, what: str) -> Optional[Dict[str, Any]]:
    named = [item for item in items if item.get("name") == name]
    if len(named) > 1:
        raise DeployError(f"{len(named)} {what}s are named {name}: delete the extra ones "
                          f"(ids {', '.join(item['id'] for item in named)}) so the deploy knows "
                          "which is this stage's")
    return named[0] if named else None


def _number(value: float) -> str:
    """A patch value: whole numbers without ".0" (API Gateway stores the rate as a double)."""
    return str(int(value)) if float(value).is_integer() else str(value)


def plan_patch(current: Dict[str, Any], plan: UsagePlan, rest_api_id: str,
               stage: str) -> List[Dict[str, str]]:
    """The PatchOperations that bring an existing plan to the config; [] when it matches."""
    throttle, quota = current.get("throttle") or {}, current.get("quota") or {}
    ops = []
    for path, now, wanted in (
            ("/throttle/rateLimit", throttle.get("rateLimit"), plan.throttle_rate_limit),
            ("/throttle/burstLimit", throttle.get("burstLimit"), plan.throttle_burst_limit),
            ("/quota/limit", quota.get("limit"), plan.quota_limit)):
        if now is None or float(now) != float(wanted):
            ops.append({"op": "replace", "path": path, "value": _number(wanted)})
    if quota.get("period") != plan.quota_period:
        ops.append({"op": "replace", "path": "/quota/period", "value": plan.quota_period})
    if {"apiId": rest_api_id, "stage": stage} not in [
            {"apiId": s.get("apiId"), "stage": s.get("stage")}
            for s in current.get("apiStages") or []]:
        ops.append({"op": "add", "path": "/apiStages", "value": f"{rest_api_id}:{stage}"})
    return ops


def ensure_api_key(apigw: Any, settings: StageSettings, rest_api_id: str) -> KeyResult:
    plan = settings.usage_plan
    assert plan is not None, "only api_key stages have a usage plan"
    name, stage = settings.resource_name, settings.api_stage
    key = _one_named(list(_pages(apigw.get_api_keys, nameQuery=name, includeValues=False)),
                     name, "API key")
    if key is None:
        key = apigw.create_api_key(name=name, enabled=True,
                                   description=f"{name}: the API key of stage {settings.stage}")
        result = KeyResult(key["id"], created=["api key"])
    else:
        result = KeyResult(key["id"])
        if not key.get("enabled", True):
            log.warning("API key %s (%s) is disabled: requests with it are refused; enable it "
                        "with aws apigateway update-api-key --api-key %s --patch-operations "
                        "op=replace,path=/enabled,value=true", name, key["id"], key["id"])

    current = _one_named(list(_pages(apigw.get_usage_plans)), name, "usage plan")
    if current is None:
        current = apigw.create_usage_plan(
            name=name, description=f"{name}: throttle and quota of stage {settings.stage}",
            apiStages=[{"apiId": rest_api_id, "stage": stage}],
            throttle={"rateLimit": plan.throttle_rate_limit,
                      "burstLimit": plan.throttle_burst_limit},
            quota={"limit": plan.quota_limit, "period": plan.quota_period})
        result.created.append("usage plan")
    else:
        ops = plan_patch(current, plan, rest_api_id, stage)
        if ops:
            apigw.update_usage_plan(usagePlanId=current["id"], patchOperations=ops)
            result.updated.append("usage plan")

    members = {item["id"] for item in _pages(apigw.get_usage_plan_keys,
                                             usagePlanId=current["id"])}
    if result.key_id not in members:
        apigw.create_usage_plan_key(usagePlanId=current["id"], keyId=result.key_id,
                                    keyType="API_KEY")
        result.created.append("association")

    done = ", ".join([f"created {', '.join(result.created)}"] * bool(result.created)
                     + [f"updated {', '.join(result.updated)}"] * bool(result.updated))
    log.info("API key %s (%s), usage plan %s on %s/%s: %s rps, burst %d, %d a %s; %s", name,
             result.key_id, current["id"], rest_api_id, stage, _number(plan.throttle_rate_limit),
             plan.throttle_burst_limit, plan.quota_limit, plan.quota_period.lower(),
             done or "nothing to change")
    log.info("read the key's value (send it as the x-api-key header) with: %s",
             read_value_command(result.key_id))
    return result
