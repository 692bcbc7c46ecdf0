"""The warm benchmark's cold-start split (import / load / first answer) is honest: the import
phase imports everything a first request runs on."""
import json

from tests.support.fixtures import PNG_CARDIOMEGALY
from tests.support.serving import run_isolated


def test_the_import_phase_covers_everything_a_first_png_request_imports(demo_store):
    """The benchmark splits a cold start into import / load / first answer; the first answer
    must not hide an import (Pillow alone is ~20 ms of a ~70 ms first inference)."""
    code = (
        "import sys, json, os\n"
        "os.environ['XRAY_EFS_ROOT'] = sys.argv[1]\n"
        "from lambda_sim.events import proxy_event\n"
        "import app\n"
        "from benchmarks.warm_worker import import_first_request\n"
        "backend = import_first_request(app)\n"
        "app.get_model().get()\n"
        "before = set(sys.modules)\n"
        "event = proxy_event('POST', '/xray', open(sys.argv[2], 'rb').read(), 'image/png')\n"
        "status = app.app(event, None)['statusCode']\n"
        "print(json.dumps([backend, status, sorted(set(sys.modules) - before)]))\n")
    out = run_isolated(code, str(demo_store), str(PNG_CARDIOMEGALY))
    backend, status, imported_by_the_request = json.loads(out.strip().splitlines()[-1])
    assert (backend, status) == ("onnxruntime", 200)
    assert imported_by_the_request == []
