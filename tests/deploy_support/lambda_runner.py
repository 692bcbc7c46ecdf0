"""Runs the Chalice handler the way Lambda's python3.11 runtime does, in a bare interpreter.

    python -I -S lambda_runner.py TASK_ROOT ANSWERS_JSON < events.json

-I ignores PYTHON* variables and the user site, -S skips site-packages, so the only code on
sys.path is the standard library and TASK_ROOT (the unzipped deployment package, as
/var/task); torch can come only from XRAY_PACKAGES_PATH, via the app's own bootstrap.
Standard library only: nothing else is importable before TASK_ROOT is on the path.
Answers go to a file: stdout is the function's log, as on Lambda.
"""
import json
import sys
import time


class Context:
    """The attributes of Lambda's context object that a handler may read."""
    function_name = "chest-xray-dev"
    function_version = "$LATEST"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:chest-xray-dev"
    log_group_name = "/aws/lambda/chest-xray-dev"
    log_stream_name = "local"

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id
        self._deadline = time.monotonic() + 28

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def main() -> None:
    task_root, answers_file = sys.argv[1], sys.argv[2]
    sys.path.insert(0, task_root)  # Lambda puts LAMBDA_TASK_ROOT first
    events = json.load(sys.stdin)
    import app  # the handler module named by "Handler": "app.app"
    answers, torch_imported = [], []
    for number, event in enumerate(events):
        answers.append(app.app(event, Context(f"request-{number}")))
        torch_imported.append("torch" in sys.modules)  # after each event: who needed torch?
    torch = sys.modules.get("torch")
    files = {getattr(module, "__file__", None) for module in list(sys.modules.values())}
    with open(answers_file, "w", encoding="utf-8") as out:
        json.dump({"answers": answers, "sys_path": sys.path, "torch_imported": torch_imported,
                   "torch_file": getattr(torch, "__file__", None),
                   "module_files": sorted(f for f in files if f and f.startswith("/"))}, out)


if __name__ == "__main__":
    main()
