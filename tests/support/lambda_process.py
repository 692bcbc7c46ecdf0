"""Runs API Gateway proxy events through the real Lambda entry point in this fresh interpreter,
as the Lambda runtime does (import app, call app.app(event, context)), with nothing of pytest's
capture in the way: its stdout and stderr are the function's logs.

python -m tests.support.lambda_process CASES_JSON OUT_JSON
CASES_JSON: [{"name", "method", "path", "body_b64", "content_type", "query", "headers",
              "identity", "authorizer", "resource", "path_parameters"}]
            (resource: the route's template when the path has parameters, e.g.
            /xray/jobs/{job_id}, with path_parameters {"job_id": ...})
OUT_JSON:   {"answers": [{"name", "status", "headers", "body"}],
             "records": [every log record created, rendered with all its attributes],
             "warnings": [[category, filename] of each warning that reached warnings.showwarning]}
"""
import base64
import json
import logging
import sys
import warnings

RECORDS = []
_make_record = logging.getLogRecordFactory()


def _recording_factory(*args, **kwargs):
    record = _make_record(*args, **kwargs)
    RECORDS.append(record)
    return record


def render(record: logging.LogRecord) -> str:
    """Everything a record holds once its handlers are done with it, as text."""
    import traceback
    text = [record.getMessage()]
    if record.exc_info:
        text.append("".join(traceback.format_exception(*record.exc_info)))
    text.extend(f"{key}={value!r}" for key, value in vars(record).items()
                if key not in ("exc_info", "msg", "args"))
    return "\n".join(text)


def main(cases_path: str, out_path: str) -> None:
    logging.setLogRecordFactory(_recording_factory)
    import app  # as the runtime imports the handler's module
    from lambda_sim.context import LambdaContext
    from lambda_sim.events import proxy_event

    seen = []
    routed = warnings.showwarning  # the function's own hook (chalicelib/observability/logging)

    def watching(message, category, filename, lineno, file=None, line=None):
        seen.append([category.__name__, filename])
        routed(message, category, filename, lineno, file, line)

    warnings.showwarning = watching
    answers = []
    for case in json.loads(open(cases_path).read()):
        event = proxy_event(case["method"], case["path"], base64.b64decode(case["body_b64"]),
                            case.get("content_type", ""), query=case.get("query"),
                            headers=case.get("headers"))
        event["requestContext"]["identity"].update(case.get("identity") or {})
        if case.get("resource"):
            event["resource"] = event["requestContext"]["resourcePath"] = case["resource"]
            event["pathParameters"] = case.get("path_parameters")
        if case.get("authorizer"):
            event["requestContext"]["authorizer"] = case["authorizer"]
        response = app.app(event, LambdaContext())
        answers.append({"name": case["name"], "status": response["statusCode"],
                        "headers": response["headers"], "body": response["body"]})
    sys.stdout.flush()
    with open(out_path, "w") as out:
        json.dump({"answers": answers, "records": [render(r) for r in RECORDS],
                   "warnings": seen}, out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
