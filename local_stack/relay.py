"""What moto cannot play without Docker: Lambda running a function for an event.

EventBridge's rules put each matching S3 event on an SQS queue (resources.py); the relay
long-polls those queues and calls app.py's own handlers in this process, the way Lambda calls
them: `app.job_worker(event_dict, context)` with the EventBridge event as delivered and a
context that has get_remaining_time_in_millis (the function's timeout). Like Lambda's
asynchronous invoke, a handler that raises gets the event again after a pause, up to three
attempts in all; only then is the event dropped (the sweeper recovers the job, as on AWS). A
message is deleted only once its handler has returned. The sweeper runs on its schedule
(XRAY_SWEEP_MINUTES), its first run one period after the start, as an EventBridge schedule's.

One thread per queue: a reserved concurrency of 1, enough for one user's jobs, and the model
loads once, lazily, in this process. Each event handled is one printed line: the function,
the kind of object, the outcome and the time taken; never a key (a batch input's key is the
user's file name), a finding or anything from the file.
"""
import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from chalicelib.jobs import layout
from lambda_sim.context import LambdaContext
from local_stack.emulator import ACCOUNT_ID, REGION
from local_stack.resources import NOTIFIER, SWEEPER, WORKER

MAX_ATTEMPTS = 3             # Lambda's asynchronous invoke: the first try and two retries
RETRY_DELAYS_S = (2, 8)      # before the second and third try (Lambda waits about 1 and 2 min)
POLL_WAIT_S = 2              # an SQS long poll; it also bounds how long stopping takes
CHALICE_DEFAULT_TIMEOUT_S = 60
CHALICE_DEFAULT_MEMORY_MB = 128


@dataclass(frozen=True)
class Function:
    """One of the stage's jobs functions, as Lambda would run it."""
    name: str                  # the Chalice name (app.py's handler of that name)
    lambda_name: str           # <app>-<stage>-<name>, what Lambda calls it
    timeout_s: int = CHALICE_DEFAULT_TIMEOUT_S
    memory_mb: int = CHALICE_DEFAULT_MEMORY_MB

    def context(self) -> LambdaContext:
        context = LambdaContext(request_id=str(uuid.uuid4()), timeout_s=self.timeout_s)
        context.function_name = self.lambda_name
        context.memory_limit_in_mb = self.memory_mb
        context.invoked_function_arn = (f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:"
                                        f"{self.lambda_name}")
        context.log_group_name = f"/aws/lambda/{self.lambda_name}"
        return context


def kind_of(event: Dict[str, Any]) -> str:
    """What the event is about, in a word: upload, batch-input, notice or schedule."""
    if event.get("detail-type") == "Scheduled Event":
        return "schedule"
    key = ((event.get("detail") or {}).get("object") or {}).get("key")
    if not isinstance(key, str):
        return "event"
    if layout.job_of_upload(key):
        return "upload"
    if layout.batch_of(key):
        return "batch-input"
    if layout.job_of_notice(key):
        return "notice"
    return "object"


def outcome_of(returned: Any) -> str:
    """The handler's answer as one word: its "outcome" when it names one."""
    if isinstance(returned, dict) and isinstance(returned.get("outcome"), str):
        return str(returned["outcome"])
    if isinstance(returned, str) and returned.isidentifier():
        return returned
    return "done"


def scheduled_event(rule_name: str) -> Dict[str, Any]:
    """The event an EventBridge schedule passes its target."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": ACCOUNT_ID, "time": now, "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule_name}"],
            "detail": {}}


class Relay:
    def __init__(self, sqs: Any, handlers: Dict[str, Callable[[Any, Any], Any]],
                 functions: Dict[str, Function], queues: Dict[str, str], sweep_minutes: float,
                 say: Callable[[str], None],
                 retry_delays_s: Tuple[int, ...] = RETRY_DELAYS_S) -> None:
        """handlers: function name -> app.py's handler (app.job_worker, ...); queues: function
        name -> the URL of its queue; say: prints one line; retry_delays_s: the pause before
        each further attempt of a failed event."""
        self.sqs = sqs
        self.handlers = handlers
        self.functions = functions
        self.queues = queues
        self.sweep_minutes = sweep_minutes
        self.say = say
        self.retry_delays_s = retry_delays_s
        self.stopping = threading.Event()
        self.threads: List[threading.Thread] = []
        self._missing: Set[str] = set()

    def start(self) -> None:
        for name in self.queues:
            self.threads.append(threading.Thread(target=self._poll, args=(name,),
                                                 name=f"relay-{name}", daemon=True))
        if SWEEPER in self.handlers:
            self.threads.append(threading.Thread(target=self._sweep, name="relay-sweeper",
                                                 daemon=True))
        for thread in self.threads:
            thread.start()

    def stop(self, timeout_s: float = 15) -> None:
        """Stops polling; a handler still running is given timeout_s to finish (its event then
        stays queued: moto goes with this process, as an unfinished Lambda's would retry)."""
        self.stopping.set()
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # one function's queue
    def _poll(self, name: str) -> None:
        url = self.queues[name]
        failing = False
        while not self.stopping.is_set():
            try:
                got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1,
                                               WaitTimeSeconds=POLL_WAIT_S,
                                               MessageSystemAttributeNames=[
                                                   "ApproximateReceiveCount"])
                failing = False
            except Exception as error:
                if self.stopping.is_set():
                    return
                if not failing:
                    self.say(f"{name}: cannot read its queue ({type(error).__name__}); "
                             "retrying")
                failing = True
                self.stopping.wait(1)
                continue
            for message in got.get("Messages", ()):
                self.deliver(name, url, message)

    def deliver(self, name: str, url: str, message: Dict[str, Any]) -> None:
        """Runs the handler on one queued event; deletes the message once it returned (or once
        the last attempt failed), else leaves it to come back after a pause."""
        attempt = int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1))
        try:
            event = json.loads(message["Body"])
        except ValueError:
            self.say(f"{name}: an unreadable event, dropped")
            self._delete(url, message)
            return
        done, line = self.invoke(name, event)
        if done:
            self._delete(url, message)
        elif attempt >= MAX_ATTEMPTS:
            line += f" (attempt {attempt} of {MAX_ATTEMPTS}: dropped; the sweeper recovers it)"
            self._delete(url, message)
        else:
            delay = self.retry_delays_s[min(attempt, len(self.retry_delays_s)) - 1]
            line += f" (attempt {attempt} of {MAX_ATTEMPTS}: again in {delay} s)"
            self.sqs.change_message_visibility(QueueUrl=url,
                                               ReceiptHandle=message["ReceiptHandle"],
                                               VisibilityTimeout=delay)
        self.say(line)

    def invoke(self, name: str, event: Dict[str, Any]) -> Tuple[bool, str]:
        """(whether the event is done with, the line to print): the handler called as Lambda
        calls it. A jobs module not written yet (chalicelib.jobs.*) is said once, and its
        events are done with: nothing could handle them."""
        function = self.functions[name]
        started = time.perf_counter()
        kind = kind_of(event)
        try:
            returned = self.handlers[name](event, function.context())
        except ModuleNotFoundError as error:
            missing = error.name or ""
            if not missing.startswith("chalicelib.jobs."):
                return False, (f"{name} {kind} -> error {type(error).__name__} in "
                               f"{_ms(started)} ms")
            if name not in self._missing:
                self._missing.add(name)
                dropped = ("its scheduled runs do nothing" if name == SWEEPER
                           else "its events are dropped")
                self.say(f"{name}: {missing} is not in this tree yet; {dropped}")
            return True, f"{name} {kind} -> skipped ({missing} missing)"
        except Exception as error:
            return False, f"{name} {kind} -> error {type(error).__name__} in {_ms(started)} ms"
        return True, f"{name} {kind} -> {outcome_of(returned)} in {_ms(started)} ms"

    def _delete(self, url: str, message: Dict[str, Any]) -> None:
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    # the schedule
    def _sweep(self) -> None:
        function = self.functions[SWEEPER]
        while not self.stopping.wait(self.sweep_minutes * 60):
            _, line = self.invoke(SWEEPER, scheduled_event(function.lambda_name))
            self.say(line)


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


FUNCTIONS = (WORKER, NOTIFIER, SWEEPER)


def functions(app_name: str, stage: str,
              settings: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[str, Function]:
    """The three jobs functions; settings: per function, its lambda_timeout and
    lambda_memory_size from .chalice/config.json when the stage sets them."""
    settings = settings or {}
    made = {}
    for name in FUNCTIONS:
        own = settings.get(name, {})
        made[name] = Function(name=name, lambda_name=f"{app_name}-{stage}-{name}",
                              timeout_s=int(own.get("lambda_timeout")
                                            or CHALICE_DEFAULT_TIMEOUT_S),
                              memory_mb=int(own.get("lambda_memory_size")
                                            or CHALICE_DEFAULT_MEMORY_MB))
    return made
