"""Runs the Chalice handler the way Lambda's python runtime does, in a bare interpreter.

    python -I -S lambda_sim/runner.py TASK_ROOT ANSWERS_JSON [TIMEOUT_S] < events.json

-I ignores PYTHON* variables and the user site, -S skips site-packages, so the only code on
sys.path is the standard library and TASK_ROOT (the unzipped deployment package, as
/var/task); torch can come only from XRAY_PACKAGES_PATH, via the app's own bootstrap.
Standard library only: nothing else is importable before TASK_ROOT is on the path.
Answers go to a file: stdout is the function's log, as on Lambda. TIMEOUT_S is the function's
timeout each context counts down from (default the API's 28 s; an emulated run needs more).
"""
import json
import os
import sys

# This folder's context module, by path: lambda_sim itself must not be importable here (nor the
# repository: its chalicelib could hide a module missing from the deployment package).
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import context  # noqa: E402

sys.path.remove(HERE)
del sys.modules["context"]


def main() -> None:
    task_root, answers_file = sys.argv[1], sys.argv[2]
    timeout_s = float(sys.argv[3]) if len(sys.argv) > 3 else 28.0
    sys.path.insert(0, task_root)  # Lambda puts LAMBDA_TASK_ROOT first
    events = json.load(sys.stdin)
    import app  # the handler module named by "Handler": "app.app"
    answers, torch_imported = [], []
    for number, event in enumerate(events):
        invocation = context.LambdaContext(f"request-{number}", timeout_s=timeout_s)
        answers.append(app.app(event, invocation))
        torch_imported.append("torch" in sys.modules)  # after each event: who needed torch?
    torch = sys.modules.get("torch")
    files = {getattr(module, "__file__", None) for module in list(sys.modules.values())}
    with open(answers_file, "w", encoding="utf-8") as out:
        json.dump({"answers": answers, "sys_path": sys.path, "torch_imported": torch_imported,
                   "torch_file": getattr(torch, "__file__", None),
                   "module_files": sorted(f for f in files if f and f.startswith("/"))}, out)


if __name__ == "__main__":
    main()
