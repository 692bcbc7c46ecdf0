"""The jobs path's triggers as they must be deployed, and their read-back after `chalice deploy`.

Chalice makes one EventBridge rule per event function of app.py: the worker's and the
notifier's match S3 "Object Created" events of the stage's jobs bucket under their prefixes
(chalicelib/jobs/events.py), the sweeper's is a schedule every XRAY_SWEEP_MINUTES. app.py builds
them from the stage's variables when Chalice imports it, so a rule names whatever bucket the
deploying environment gave it: the read-back proves each rule holds the pattern (or schedule)
of the stage as deploy/settings.py read it, is enabled, and targets its deployed function.
The package path checks the same in the template (deploy/package.py).
"""
import json
import logging
from typing import Any, Dict

from chalice.app import Rate

from chalicelib.jobs.events import notifier_pattern, worker_pattern
from deploy.errors import DeployError
from deploy.settings import NOTIFIER, SWEEPER, WORKER, StageSettings

log = logging.getLogger("deploy")


def sweep_schedule(settings: StageSettings) -> str:
    """The sweeper's schedule expression, as Chalice writes app.py's Rate."""
    return Rate(settings.jobs.sweep_minutes, unit=Rate.MINUTES).to_string()


def event_patterns(settings: StageSettings) -> Dict[str, Dict[str, Any]]:
    """Chalice's function name -> the EventBridge pattern its rule must hold."""
    bucket = settings.jobs_bucket
    return {WORKER: worker_pattern(bucket), NOTIFIER: notifier_pattern(bucket)}


def check_triggers(events: Any, settings: StageSettings, rules: Dict[str, str],
                   arns: Dict[str, str]) -> None:
    """rules: function -> rule name (Chalice's deployed record); arns: function -> ARN."""
    wanted: Dict[str, Dict[str, Any]] = {
        name: {"EventPattern": pattern} for name, pattern in event_patterns(settings).items()}
    wanted[SWEEPER] = {"ScheduleExpression": sweep_schedule(settings)}
    for name, expected in wanted.items():
        if name not in rules:
            raise DeployError(f"chalice deploy recorded no EventBridge rule for {name}: deploy "
                              "the current app.py (it declares the jobs path's triggers)")
        rule = events.describe_rule(Name=rules[name])
        got: Dict[str, Any] = {}
        if "EventPattern" in expected:
            got["EventPattern"] = json.loads(rule.get("EventPattern") or "{}")
        else:
            got["ScheduleExpression"] = rule.get("ScheduleExpression")
        if got != expected:
            raise DeployError(
                f"rule {rules[name]} of {name} holds {json.dumps(got)}, not the stage's "
                f"{json.dumps(expected)}: app.py was imported with other values than "
                ".chalice/config.json's stage (a shell variable?); deploy again")
        if rule.get("State", "ENABLED") != "ENABLED":
            raise DeployError(f"rule {rules[name]} of {name} is {rule['State']}: enable it with "
                              f"aws events enable-rule --name {rules[name]}")
        targets = [t["Arn"] for t in events.list_targets_by_rule(Rule=rules[name])["Targets"]]
        if arns[name] not in targets:
            raise DeployError(f"rule {rules[name]} does not target {arns[name]} ({name}); "
                              f"its targets: {', '.join(targets) or 'none'}: deploy again")
        log.info("%s: rule %s %s", name, rules[name],
                 "matches the jobs bucket's events" if "EventPattern" in expected
                 else f"runs {expected['ScheduleExpression']}")
