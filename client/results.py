"""OUT/results.jsonl and OUT/summary.csv: what a batch found, and what makes it resumable.

results.jsonl holds one JSON line per file: {"file" (relative to the folder), "sha256",
"size", "api" (the --api it was sent to), "job_id", "status", "status_url", "finished_at"}
plus "result" (exactly what POST /xray answers) when succeeded, or "error" ({"Code",
"Message"}) otherwise, and, with --stow, "stow" (client/stow.py: {"url", "status": stored or
failed, "http_status", "sop_instance_uid" or "error", "at"}). While a batch runs, each outcome
is appended (flushed and synced) the moment it is known, so an interrupted run keeps
everything it learnt. At the end the file is rewritten, atomically (a temporary file renamed
over it), to the latest line of each file, earlier runs' files included: nothing already known
is lost, and a reader never sees half a file. summary.csv is made from it the same way.

Statuses: the job's own (succeeded, failed, expired), or "timeout" for a job still running when
the client stopped waiting (a re-run polls it again), or "failed" for a file the API or S3
refused (the error is theirs)."""
import contextlib
import csv
import io
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

RESULTS_NAME = "results.jsonl"
SUMMARY_NAME = "summary.csv"
LOCK_NAME = ".lock"
SUCCEEDED, FAILED, TIMEOUT = "succeeded", "failed", "timeout"
SUMMARY_COLUMNS = ("file", "status", "top_finding", "top_probability", "positives", "model",
                   "model_version", "error", "stow")


class Busy(Exception):
    """Another batch is writing to the same results folder."""


class Results:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / RESULTS_NAME
        self.summary_path = out / SUMMARY_NAME
        self._lock = threading.Lock()
        self._held: Optional[Any] = None
        self.unreadable = 0     # lines of a previous run that were not JSON (a torn last line)

    def __enter__(self) -> "Results":
        self.out.mkdir(parents=True, exist_ok=True)
        self._held = _exclusive(self.out / LOCK_NAME)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def load(self) -> Dict[str, Dict[str, Any]]:
        """The latest line of each file, by its relative path."""
        latest: Dict[str, Dict[str, Any]] = {}
        for line in self._lines():
            latest[line["file"]] = line
        return latest

    def append(self, line: Dict[str, Any]) -> None:
        data = json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self._lock:
            with open(self.path, "ab+") as file:
                file.seek(0, os.SEEK_END)
                if file.tell():            # a run killed mid-write leaves a torn last line
                    file.seek(-1, os.SEEK_END)
                    if file.read(1) != b"\n":
                        file.write(b"\n")
                file.write(data.encode())
                file.flush()
                os.fsync(file.fileno())

    def rewrite(self) -> List[Dict[str, Any]]:
        """results.jsonl as the latest line per file (sorted by file), and summary.csv from it;
        both replaced atomically. The lines, as written."""
        with self._lock:
            lines = sorted(self.load().values(), key=lambda line: line["file"])
            _replace(self.path, "".join(json.dumps(line, separators=(",", ":"),
                                                   ensure_ascii=False) + "\n"
                                        for line in lines).encode())
            _replace(self.summary_path, summary_csv(lines).encode())
        return lines

    def _lines(self) -> Iterable[Dict[str, Any]]:
        self.unreadable = 0
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        for text in raw.splitlines():
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except ValueError:
                self.unreadable += 1
                continue
            if isinstance(line, dict) and isinstance(line.get("file"), str):
                yield line
            else:
                self.unreadable += 1


def summary_csv(lines: Iterable[Dict[str, Any]]) -> str:
    """file, status, the top finding and its probability, the positive labels (";"-separated),
    the model's name and version, the error's code for a file that did not succeed, and
    whether its SR was stored (--stow: stored, failed; empty without)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for line in lines:
        writer.writerow(summary_row(line))
    return buffer.getvalue()


def summary_row(line: Dict[str, Any]) -> Tuple[str, ...]:
    result = line.get("result") if line.get("status") == SUCCEEDED else None
    top_label = top_probability = positives = model = version = ""
    if isinstance(result, dict):
        findings = result.get("findings") or []
        if findings:
            top = max(findings, key=lambda finding: finding.get("probability", 0))
            top_label, top_probability = str(top.get("label", "")), str(top.get("probability"))
        positives = ";".join(str(label) for label in result.get("positive") or [])
        model = str((result.get("model") or {}).get("name", ""))
        version = str((result.get("model") or {}).get("version", ""))
    error = line.get("error") if isinstance(line.get("error"), dict) else {}
    stow = line.get("stow") if isinstance(line.get("stow"), dict) else {}
    return (line["file"], str(line.get("status", "")), top_label, top_probability, positives,
            model, version, str((error or {}).get("Code", "")), str((stow or {}).get("status", "")))


def _replace(path: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _exclusive(path: Path) -> Any:
    """An open lock file held for the batch's life: a second batch on the same folder is
    refused instead of interleaving its rewrite with ours."""
    handle = open(path, "a")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one batch per folder is on the user
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise Busy(f"another batch is writing to {path.parent}") from None
    return handle

