"""Where every log line of the function goes, and what a line may carry.

One Powertools JSON logger writes to stdout (CloudWatch Logs on Lambda) for our own loggers (the
app's, chalicelib.*) and for the libraries on the request path that log (pydicom, highdicom). A
filter on its one handler applies the rules to every record, whoever wrote it:
- an exception is logged as its type and the frames it went through (file, line, function),
  never its message or the traceback text: a parser's message may quote a header value;
- a library's record is logged as its logger and level only, and only from level ERROR up:
  pydicom quotes element values, patient names among them, and warns what it logs anyway;
- library warnings (the warnings module) are logged as their category and module only, never
  their text, instead of Python's default of printing them to stderr.
"""
import logging
import sys
import traceback
import warnings
from types import TracebackType
from typing import Any, Optional, TextIO, Type

from aws_lambda_powertools import Logger

SERVICE = "chest-xray"       # = the Chalice app_name, whose logger Chalice itself writes to
OWN_LOGGERS = (SERVICE, "chalicelib")
# Libraries that log on the request path; their records are kept, their text is not. highdicom
# (an SR's builder) logs the patient name it copies when it finds the name's form dubious.
LIBRARY_LOGGERS = ("pydicom", "highdicom")


class _CurrentStdout(logging.StreamHandler):
    """A stream handler writing to sys.stdout as it is when a record is emitted (the Lambda
    runtime's, `chalice local`'s, a test's capture), not as it was at import."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:  # logging.StreamHandler.__init__ sets it
        pass


class Withhold(logging.Filter):
    """The rules above, applied to a record in place before it is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        # in place, so that no other handler of the record sees the text either
        if record.exc_info:
            kind, _, tb = record.exc_info
            record.error_type = kind.__name__ if kind is not None else None
            record.error_frames = frames(tb)
            record.exc_info, record.exc_text = None, None
        record.stack_info = None
        if not record.name.startswith(OWN_LOGGERS):
            record.msg = (f"{record.name} logged at level {record.levelname} (text withheld: "
                          f"a library's message may quote DICOM header values)")
            record.args = None
            # pydicom logs each finding and warns it too: the warning's line stands for both.
            # (Its logger's level cannot be set once for all: importing pydicom resets it.)
            return record.levelno >= logging.ERROR
        return True


def frames(tb: Optional[TracebackType]) -> list:
    """Where an exception went, without what it said: ["chalicelib/x.py:12 in decode", ...]."""
    return [f"{_short(frame.filename)}:{frame.lineno} in {frame.name}"
            for frame in traceback.extract_tb(tb)]


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/chalicelib/", "/lambda_sim/"):
        if marker in filename:
            head = "" if marker == "/site-packages/" else marker.strip("/") + "/"
            return head + filename.rsplit(marker, 1)[1]
    return filename.rsplit("/", 1)[-1]


_handler = _CurrentStdout()
_handler.addFilter(Withhold())
logger = Logger(service=SERVICE, level="INFO", logger_handler=_handler, use_rfc3339=True,
                utc=True)


def log_warning(message: Any, category: Type[Warning], filename: str, lineno: int,
                file: Optional[TextIO] = None, line: Optional[str] = None) -> None:
    """warnings.showwarning for the whole process: which category, from which module."""
    logger.warning("library warning (text withheld: it may quote DICOM header values)",
                   extra={"event": "warning", "category": category.__name__,
                          "source": _module(filename)})


def _module(filename: str) -> str:
    path = _short(filename)
    return path[:-3].replace("/", ".") if path.endswith(".py") else path


def install() -> None:
    """Routes our loggers, the request path's libraries and the warnings module through the one
    handler (once per process; calling it again changes nothing). The app's own logger is the one
    Chalice logs unhandled exceptions to (with their traceback): the filter covers it too."""
    for name in OWN_LOGGERS + LIBRARY_LOGGERS:
        named = logging.getLogger(name)
        for handler in list(named.handlers):
            if handler is not _handler:  # e.g. Chalice's own plain-text stdout handler
                named.removeHandler(handler)
        if _handler not in named.handlers:
            named.addHandler(_handler)
        named.propagate = False  # the Lambda runtime's root handler would print it again
    logging.getLogger(SERVICE).setLevel(logging.INFO)
    logging.getLogger("chalicelib").setLevel(logging.INFO)
    warnings.showwarning = log_warning
