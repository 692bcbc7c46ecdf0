"""`python -m client batch FOLDER`: every image of a folder through the jobs path, a few at a
time, into OUT/results.jsonl and OUT/summary.csv (client/results.py).

Resumable by content: a file whose sha256 already has a succeeded line is not sent again (a
renamed or copied file gets that line under its new name), a file whose job was still running
when the last run stopped waiting is polled rather than resent, and everything else (failures
included) is sent again. Two identical files of one run are sent once. Only lines of the same
--api count: another stage (another model, perhaps) answers afresh.

With --stow (client/stow.py), the SRs of the DICOM files that succeeded, in this run or an
earlier one, are then sent to a DICOMweb server, once per job.

Nothing here prints a finding: stdout gets the final counts only (client/cli.py), stderr the
progress bars and, for a file that failed, its path and the server's Code and Message."""
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO, Union

from tqdm import tqdm

from client.discover import ImageFile, discover, sha256_of
from client.jobs import JobsApi, StillRunning
from client.results import FAILED, SUCCEEDED, TIMEOUT, Results
from client.stow import STORED, Forwarder
from client.transport import Refused

JOB_NOT_FOUND = 404


@dataclass
class Counts:
    images: int = 0
    already_done: int = 0       # succeeded in an earlier run (or an identical file did)
    sent: int = 0               # uploaded in this run
    succeeded: int = 0          # in this run, already_done included
    failed: int = 0
    still_running: int = 0
    skipped: int = 0            # files that are not images
    stored: int = 0             # --stow: SRs stored in this run
    already_stored: int = 0     # --stow: stored at the same URL by an earlier run
    stow_failed: int = 0

    @property
    def all_succeeded(self) -> bool:
        return self.succeeded == self.images and self.stow_failed == 0


@dataclass
class Task:
    image: ImageFile
    sha256: str
    pending: Optional[Dict[str, Any]]           # a timed-out line of an earlier run: poll it
    copies: List[ImageFile] = field(default_factory=list)   # identical files of this run


class Batch:
    def __init__(self, jobs: JobsApi, results: Results, folder: Path, parallel: int = 4,
                 timeout_s: float = 600.0, progress: Optional[bool] = None,
                 err: TextIO = sys.stderr, forwarder: Optional[Forwarder] = None) -> None:
        self.jobs = jobs
        self.results = results
        self.folder = folder
        self.parallel = parallel
        self.timeout_s = timeout_s
        self.progress = progress
        self.err = err
        self.forwarder = forwarder
        self.counts = Counts()
        self._lock = threading.Lock()
        self._upload_bar: Optional[tqdm] = None

    @property
    def stop(self) -> threading.Event:
        return self.jobs.stop

    def run(self) -> Counts:
        images, skipped = discover(self.folder, exclude=self.results.out)
        self.counts.images, self.counts.skipped = len(images), len(skipped)
        previous = self.results.load()
        if self.results.unreadable:
            self._say(f"{self.results.path}: {self.results.unreadable} unreadable line(s) "
                      "ignored (an interrupted write); those files are sent again")
        tasks = self._plan(images, self._hashes(images), previous)
        try:
            self._send(tasks)
            if self.forwarder is not None:
                self._forward(self.forwarder)
        finally:
            self.results.rewrite()
        return self.counts

    def _hashes(self, images: List[ImageFile]) -> List[Union[str, OSError]]:
        def digest(image: ImageFile) -> Union[str, OSError]:
            try:
                return sha256_of(image.path)
            except OSError as error:
                return error
        with ThreadPoolExecutor(self.parallel) as pool, \
                self._bar(total=len(images), desc="hashing", unit="file") as bar:
            hashes = []
            for found in pool.map(digest, images):
                hashes.append(found)
                bar.update(1)
        return hashes

    def _plan(self, images: List[ImageFile], hashes: List[Union[str, OSError]],
              previous: Dict[str, Dict[str, Any]]) -> List[Task]:
        done: Dict[str, Dict[str, Any]] = {}
        pending: Dict[str, Dict[str, Any]] = {}
        for line in previous.values():
            if line.get("api") != self.jobs.api_url:   # another stage's answers: not reused
                continue
            if line.get("status") == SUCCEEDED and "result" in line:
                done.setdefault(line["sha256"], line)
            elif line.get("status") == TIMEOUT and line.get("status_url"):
                pending.setdefault(line["sha256"], line)
        tasks: Dict[str, Task] = {}
        for image, digest in zip(images, hashes):
            if isinstance(digest, OSError):
                self._record(_unreadable(self._line(image, None), digest))
            elif digest in done:
                self.counts.already_done += 1
                self.counts.succeeded += 1
                known = previous.get(image.relative)
                if known is None or known.get("sha256") != digest \
                        or known.get("status") != SUCCEEDED:
                    self.results.append(_copy(done[digest], image))
            elif digest in tasks:
                tasks[digest].copies.append(image)
            else:
                tasks[digest] = Task(image, digest, pending.get(digest))
        return list(tasks.values())

    def _send(self, tasks: List[Task]) -> None:
        total = sum(task.image.size for task in tasks if task.pending is None)
        with self._bar(total=total, desc="upload", unit="B", unit_scale=True,
                       unit_divisor=1024) as upload_bar, \
                self._bar(total=sum(1 + len(t.copies) for t in tasks), desc="jobs",
                          unit="file") as jobs_bar, \
                ThreadPoolExecutor(self.parallel) as pool:
            self._upload_bar = upload_bar
            futures: Dict[Future, Task] = {pool.submit(self._process, task): task
                                           for task in tasks}
            try:
                for future in as_completed(futures):
                    self._take(future.result(), futures[future], jobs_bar)
            except KeyboardInterrupt:
                # Polls stop at once (their jobs get "timeout" lines: the next run polls them
                # instead of sending again), unstarted files are left for the next run, and
                # what the running ones learnt is still written.
                self.stop.set()
                for future in futures:
                    future.cancel()
                for future, task in futures.items():
                    if not future.cancelled():
                        self._take(future.result(), task, jobs_bar)
                raise

    def _take(self, line: Optional[Dict[str, Any]], task: Task, jobs_bar: tqdm) -> None:
        if line is None:   # stopped before it started
            return
        for image in [task.image, *task.copies]:
            self._record(line if image is task.image else _copy(line, image))
            jobs_bar.update(1)

    def _process(self, task: Task) -> Optional[Dict[str, Any]]:
        if self.stop.is_set():
            return None
        line = self._line(task.image, task.sha256)
        try:
            return self._sent(task, line)
        except OSError as error:   # unreadable, or changed while being sent
            return _unreadable(line, error)

    def _sent(self, task: Task, line: Dict[str, Any]) -> Dict[str, Any]:
        image = task.image
        if task.pending is not None:
            line.update(job_id=task.pending.get("job_id"), status_url=task.pending["status_url"])
            try:
                return self._waited(line)
            except Refused as error:
                if error.status != JOB_NOT_FOUND:
                    return _failed(line, error)
            self._grow_upload_bar(image.size)   # gone (expired, deleted): sent again
            line.update(job_id=None, status_url=None)
        try:
            answer = self.jobs.create(image.content_type, image.size)
        except Refused as error:
            return _failed(line, error)
        line.update(job_id=answer["job_id"], status_url=answer["status_url"])
        try:
            self.jobs.upload(answer["upload"], image.path, image.content_type, self._uploaded)
        except Refused as error:
            return _failed(line, error)
        with self._lock:
            self.counts.sent += 1
        try:
            return self._waited(line)
        except Refused as error:
            return _failed(line, error)

    def _forward(self, forwarder: Forwarder) -> None:
        """Each succeeded DICOM line's SR to the DICOMweb server, fetched and sent once per job
        (identical files share one), its outcome appended as the line's "stow" member."""
        jobs: Dict[str, List[Dict[str, Any]]] = {}
        for line in self.results.load().values():
            if forwarder.wants(line):
                jobs.setdefault(line["status_url"], []).append(line)
            elif (line.get("stow") or {}).get("url") == forwarder.shown_url and \
                    line["stow"].get("status") == STORED:
                self.counts.already_stored += 1
        with self._bar(total=sum(map(len, jobs.values())), desc="stow", unit="file") as bar, \
                ThreadPoolExecutor(self.parallel) as pool:
            futures = {pool.submit(forwarder.forward, url): url for url in jobs}
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    for line in jobs[futures[future]]:
                        self._stowed({**line, "stow": outcome})
                        bar.update(1)
            except KeyboardInterrupt:
                for future in futures:
                    future.cancel()
                raise

    def _stowed(self, line: Dict[str, Any]) -> None:
        self.results.append(line)
        outcome = line["stow"]
        if outcome["status"] == STORED:
            self.counts.stored += 1
            return
        self.counts.stow_failed += 1
        error = outcome.get("error") or {}
        self._say(f"{line['file']}: SR not stored at {outcome['url']}: "
                  f"{error.get('Code', '')}: {error.get('Message', '')}")

    def _line(self, image: ImageFile, sha256: Optional[str]) -> Dict[str, Any]:
        return {"file": image.relative, "sha256": sha256, "size": image.size,
                "api": self.jobs.api_url, "job_id": None, "status_url": None}

    def _waited(self, line: Dict[str, Any]) -> Dict[str, Any]:
        try:
            view = self.jobs.wait(line["status_url"], self.timeout_s)
        except StillRunning as running:
            return _finished(line, TIMEOUT, error={
                "Code": "StillRunning",
                "Message": f"still {running.status} when the client stopped waiting "
                           f"(--timeout {self.timeout_s:g} s); a re-run polls it again"})
        if view["status"] == SUCCEEDED:
            return _finished(line, SUCCEEDED, result=view.get("result"))
        return _finished(line, str(view["status"]),
                         error=view.get("error") or {"Code": "JobFailed", "Message": ""})

    def _record(self, line: Dict[str, Any]) -> None:
        self.results.append(line)
        status = line["status"]
        with self._lock:
            if status == SUCCEEDED:
                self.counts.succeeded += 1
            elif status == TIMEOUT:
                self.counts.still_running += 1
            else:
                self.counts.failed += 1
        if status != SUCCEEDED:
            error = line.get("error") or {}
            self._say(f"{line['file']}: {status}: {error.get('Code', '')}: "
                      f"{error.get('Message', '')}")

    def _uploaded(self, n: int) -> None:
        if self._upload_bar is not None:
            with self._lock:
                self._upload_bar.update(n)

    def _grow_upload_bar(self, n: int) -> None:
        if self._upload_bar is not None:
            with self._lock:
                self._upload_bar.total += n
                self._upload_bar.refresh()

    def _bar(self, **kwargs: Any) -> tqdm:
        disable = None if self.progress is None else not self.progress
        return tqdm(file=self.err, disable=disable, dynamic_ncols=True, **kwargs)

    def _say(self, message: str) -> None:
        tqdm.write(message, file=self.err)


def _finished(line: Dict[str, Any], status: str, **outcome: Any) -> Dict[str, Any]:
    return {**line, "status": status,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")
            .replace("+00:00", "Z"), **outcome}


def _failed(line: Dict[str, Any], error: Refused) -> Dict[str, Any]:
    return _finished(line, FAILED, error=error.error())


def _unreadable(line: Dict[str, Any], error: OSError) -> Dict[str, Any]:
    return _finished(line, FAILED, error={"Code": "UnreadableFile",
                                          "Message": error.strerror or str(error)})


def _copy(line: Dict[str, Any], image: ImageFile) -> Dict[str, Any]:
    """The line of an identical file, under this file's name."""
    return {**line, "file": image.relative, "size": image.size}
