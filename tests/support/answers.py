"""The service's answers for every shared fixture, through the app (decode, preprocess,
inference, response), so that a platform change (Python, numpy, onnxruntime, torch, Pillow) can be
checked against answers recorded before it: tests/api/test_recorded_answers.py.

    .venv/bin/python -m tests.support.answers tests/data/answers.json   (re-record)
"""
import json
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from tests.support.fixtures import ALL_FIXTURES, CONTENT_TYPE
from tests.support.serving import serving

BACKENDS = ("onnxruntime", "torch")
# what the answers depend on: recorded beside them, so a mismatch says what changed
PACKAGES = ("numpy", "onnxruntime", "torch", "Pillow", "pydicom")


def answers(efs_root: Path) -> dict:
    """{backend: {fixture file name: response body}} for the model current in efs_root."""
    result: dict = {}
    for backend in BACKENDS:
        with serving(efs_root, XRAY_BACKEND=backend) as client:
            result[backend] = {}
            for path in ALL_FIXTURES:
                response = client.http.post(
                    "/xray", body=path.read_bytes(),
                    headers={"Content-Type": CONTENT_TYPE[path.suffix]})
                assert response.status_code == 200, (path.name, response.body)
                body = json.loads(response.body)
                body.pop("timings_ms")  # how long, not what: never the same twice
                result[backend][path.name] = body
    return result


def platform_record() -> dict:
    return {"python": platform.python_version(),
            **{name: metadata.version(name) for name in PACKAGES}}


def main() -> None:
    from vendor_efs.models.demo import install_demo
    with tempfile.TemporaryDirectory() as root:
        install_demo(Path(root) / "models")
        record = {"recorded_on": platform_record(), "answers": answers(Path(root))}
    Path(sys.argv[1]).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
