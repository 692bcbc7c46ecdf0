"""What a log record may carry, whoever wrote it: exceptions as type and frames, libraries'
records and warnings as where they came from, never their text."""
import json
import logging
import subprocess
import sys

import pytest

from chalicelib.observability.logging import OWN_LOGGERS, install, logger
from lambda_sim.context import LambdaContext
from lambda_sim.events import proxy_event
from tests.support.fixtures import PNG_CARDIOMEGALY, REPO
from tests.support.serving import serving

MARKER = "PHIMARK-Doe^Jane"
MARKER_VALUE = "PHIMARKF"  # what pydicom quotes: an 8-character IS value


def dicom_with_bad_frames(value: str) -> bytes:
    """A DICOM whose NumberOfFrames (IS) holds `value`, which pydicom warns about on reading."""
    import warnings

    import numpy as np

    from tests.support.dicom_factory import make_dicom
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = make_dicom(np.zeros((64, 64), np.uint16), NumberOfFrames="33333333")
    return body.replace(b"33333333", value.encode("ascii"))


@pytest.fixture(autouse=True)
def installed():
    """As on Lambda: importing app.py installs the logging (chalicelib/observability/logging)."""
    import app  # noqa: F401


def lines_of(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_given_an_exception_when_logged_then_its_type_and_frames_but_not_its_message(capsys):
    # given an exception whose message quotes a header value
    try:
        raise ValueError(f"Invalid value for VR PN: '{MARKER}'")
    except ValueError:
        # when it is logged with its traceback
        logger.exception("decode failed")
    # then the line names the type and where it was raised, and not what it said
    out = capsys.readouterr().out
    (line,) = lines_of(out)
    assert line["error_type"] == "ValueError" and line["message"] == "decode failed"
    assert any("test_logging.py" in frame for frame in line["error_frames"])
    assert MARKER not in out and "exception" not in line and "stack_trace" not in line


def test_given_a_library_record_when_logged_then_its_logger_and_level_but_not_its_text(capsys):
    logging.getLogger("pydicom").error("Invalid value for VR PN: '%s'", MARKER)
    out = capsys.readouterr().out
    (line,) = lines_of(out)
    assert line["level"] == "ERROR" and line["message"].startswith("pydicom logged at level ERROR")
    assert MARKER not in out


def test_given_our_own_record_when_logged_then_its_text_is_kept(capsys):
    logging.getLogger("chalicelib.inference.lazy").info("model %s loaded", "demo")
    (line,) = lines_of(capsys.readouterr().out)
    assert line["message"] == "model demo loaded"


def test_given_install_twice_when_logging_then_one_handler_each_and_chalices_is_gone():
    install()  # a second time
    for name in OWN_LOGGERS + ("pydicom",):
        named = logging.getLogger(name)
        assert len(named.handlers) == 1 and named.propagate is False, name
    assert not any(type(handler) is logging.StreamHandler
                   for handler in logging.getLogger("chest-xray").handlers)


def test_given_a_process_when_pydicom_warns_then_category_and_module_only_on_any_stream(
        tmp_path):
    """A fresh interpreter, as Lambda runs the function (no pytest warning capture), decodes a
    DICOM whose NumberOfFrames is not a number: pydicom logs and warns the value it found. The
    function leaves one line naming the warning's category and module, and neither pydicom's
    text nor Python's default (the message printed to stderr) reaches any stream."""
    body = tmp_path / "frames.dcm"
    body.write_bytes(dicom_with_bad_frames(MARKER_VALUE))
    code = ("import sys\n"
            "import app\n"
            "from chalicelib.imaging.dispatch import decode\n"
            "from chalicelib.imaging.image import Limits\n"
            "try:\n"
            "    decode(open(sys.argv[1], 'rb').read(), 'application/dicom', Limits(10**7, 32))\n"
            "except Exception as error:\n"
            "    assert type(error).__name__ == 'InvalidImage', error\n")
    result = subprocess.run([sys.executable, "-c", code, str(body)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert MARKER_VALUE not in result.stdout + result.stderr
    assert result.stderr == ""
    warned = [line for line in lines_of(result.stdout) if line.get("event") == "warning"]
    assert [(line["category"], line["source"]) for line in warned] == [
        ("UserWarning", "pydicom.valuerep")]
    assert not [line for line in lines_of(result.stdout)
                if line.get("message", "").startswith("pydicom")]


@pytest.fixture
def lambda_app(demo_store):
    import app as app_module
    with serving(demo_store):
        yield app_module


def test_given_an_unhandled_exception_when_invoked_then_500_and_chalices_log_has_no_message(
        lambda_app, capsys, monkeypatch):
    # given a service that fails with a message quoting what it was sent
    class Failing:
        def classify(self, *args, **kwargs):
            raise RuntimeError(f"unexpected header {MARKER}")
    monkeypatch.setattr(lambda_app, "get_service", lambda: Failing())
    capsys.readouterr()
    # when a classification is asked
    response = lambda_app.app(proxy_event("POST", "/xray", PNG_CARDIOMEGALY.read_bytes(),
                                          "image/png"), LambdaContext())
    # then the client gets Chalice's generic 500, and Chalice's own error line (it logs the
    # traceback) says RuntimeError and where, without the message
    captured = capsys.readouterr()
    assert response["statusCode"] == 500
    assert json.loads(response["body"])["Code"] == "InternalServerError"
    assert MARKER not in captured.out + captured.err + response["body"]
    logs = lines_of(captured.out)
    caught = [line for line in logs if line.get("message", "").startswith("Caught exception")]
    assert len(caught) == 1 and caught[0]["error_type"] == "RuntimeError"
    assert any("classify" in frame for frame in caught[0]["error_frames"])
    request = [line for line in logs if line.get("event") == "request"]
    assert request[0]["status"] == 500 and request[0]["error_code"] == "InternalServerError"
