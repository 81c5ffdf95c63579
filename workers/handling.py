"""How every subscriber's task handles a message of product events: the task base class of both
worker apps (``Celery(task_cls=...)``, Saleor's idiom). The tasks themselves stay one line:
``return self.handle(events, unexpected, apply=<the subscriber's service>)``.

It validates each event against the contract, parks the invalid ones with their reason, applies
the valid ones in one call of ``apply``, retries transient database errors with backoff through
the subscriber's private exchange, and parks what can never succeed. Everything
subscriber-specific (queues, retry policy, metrics) comes from ``self.app.subscriber``
(workers/subscriber.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import psycopg2
from billiard.exceptions import WorkerLostError
from celery import Task
from celery.exceptions import Reject
from celery.worker.request import Request
from celery.worker.state import task_ready
from django.db import InterfaceError, OperationalError, connections

from common.trace import trace_id_set
from product_events import contract
from workers import confirming, parking
from workers.confirming import confirming_producer, publish_options

logger = logging.getLogger("workers.handling")
contract.schema_validator()  # compile the JSON Schema once, before the pool forks

# Worth retrying: the database is unavailable, the connection broke, a lock or statement timed
# out. psycopg2's own classes too: a service writing through the raw cursor (execute_values)
# gets them unwrapped by Django, and an outage in the middle of such a write is no less transient.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, psycopg2.OperationalError,
                    psycopg2.InterfaceError)


# A message whose task killed its pool process (an OOM kill, a segfault) this many times in
# one worker is parked with the reason, not requeued once more: the worker's own poison
# handling. The queue's delivery limit (catalog_project/topology.py, 100) stays the backstop
# for what no worker survives to count (a whole worker killed by one message, again and again);
# it is far higher because on RabbitMQ 3.10 every restart counts there for each prefetched
# message, which a worker restart and a poison message cannot be told apart by.
WORKER_LOST_LIMIT = 3


class _Losses:
    """Per task id, how many times its run was lost in this worker process (bounded)."""

    def __init__(self, size: int = 10_000) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._size = size

    def bump(self, task_id: str) -> int:
        n = self._counts.pop(task_id, 0) + 1
        self._counts[task_id] = n
        while len(self._counts) > self._size:
            self._counts.popitem(last=False)
        return n

    def forget(self, task_id: str) -> None:
        self._counts.pop(task_id, None)


_losses = _Losses()


class ProductEventsRequest(Request):
    """Celery's request, except that a message that keeps killing its pool process is parked
    (with ``x-park-reason``) after ``WORKER_LOST_LIMIT`` runs, instead of being requeued until
    the broker's delivery limit. Runs in the worker's main process."""

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        exc = exc_info.exception
        exc = getattr(exc, "exc", exc)  # billiard's ExceptionWithTraceback, as Celery unwraps it
        if isinstance(exc, WorkerLostError) and self.task.acks_late and not self.acknowledged:
            losses = _losses.bump(self.id)
            if losses >= WORKER_LOST_LIMIT and self._park(losses, exc):
                return None
        return super().on_failure(exc_info, send_failed_event=send_failed_event,
                                  return_ok=return_ok)

    def _park(self, losses: int, exc: BaseException) -> bool:
        reason = (f"killed its worker process {losses} times ({exc!r}); parked instead of "
                  "requeued again")
        try:
            parking.park_message(app=self.task.app, message=self.message, reason=reason)
        except Exception:  # noqa: BLE001 - could not park: requeue as Celery would
            logger.exception("could not park task %s; requeueing it", self.id)
            return False
        task_ready(self)  # as Celery's on_failure does: no longer an active request
        self.acknowledge()
        _losses.forget(self.id)
        self.send_event("task-failed", exception=reason, traceback="")
        return True


class ProductEventsTask(Task):
    """A task receiving ``kwargs={"events": [<envelope>, ...]}``: acked after the write,
    rejected (to the dead-letter queue) when it fails for good, results never stored."""

    Request = ProductEventsRequest
    acks_late = True
    max_retries = None  # the subscriber's RetryPolicy bounds retries, and then parks
    ignore_result = True

    @property
    def subscriber(self):
        return self.app.subscriber

    def handle(self, events, unexpected, *, apply):
        """``apply(events=[ProductEvent])`` writes valid events in one transaction and returns
        an object with ``applied``, ``stale`` and ``applied_events``."""
        metrics = self.subscriber.metrics
        if unexpected or not isinstance(events, list) or not events:
            reason = ("invalid task arguments: expected kwargs {'events': [<envelope>, ...]}, "
                      f"got events={type(events).__name__} and extra {sorted(unexpected)}")
            logger.error("parking message %s: %s", self.request.id, reason)
            metrics.dead_lettered(1, kind="message")
            raise Reject(reason, requeue=False)  # the whole message goes to the DLQ as it is

        valid, invalid = [], []
        for raw in events:
            try:
                valid.append(contract.envelope_validate(raw))
            except contract.InvalidEvent as exc:
                invalid.append((raw, str(exc)))
        trace_ids = sorted({ev.trace_id for ev in valid if ev.trace_id})
        trace_id_set(trace_ids[0] if len(trace_ids) == 1 else None)  # this task's log lines

        try:
            result = self._apply_holding(valid, apply)
        except TRANSIENT_ERRORS as exc:
            _close_broken_db_connections()
            if invalid:  # park the bad ones now; retry only the good ones
                self._park(invalid)
            if not database_reachable():
                # the outage outlasted this hold: the message goes round the subscriber's delay
                # queue (a new message: its delivery count starts again) with its retry budget
                # untouched, however long the outage lasts; nothing is parked for it
                self.request.retries = max(-1, self.request.retries - 1)
                return self._retry_or_park([ev.as_dict() for ev in valid], exc,
                                           already_parked=len(invalid), budget=False)
            return self._retry_or_park([ev.as_dict() for ev in valid], exc,
                                       already_parked=len(invalid))
        except Exception as exc:  # noqa: BLE001
            # A permanent error (a value the database or its driver rejects, ...). Find the
            # culprits one by one so that the good events of this batch still land.
            try:
                return self._apply_one_by_one(valid, invalid, first_error=exc, apply=apply)
            except TRANSIENT_ERRORS as again:  # the database went away meanwhile: retry all
                _close_broken_db_connections()
                reachable = database_reachable()
                if not reachable:
                    self.request.retries = max(-1, self.request.retries - 1)
                return self._retry_or_park([ev.as_dict() for ev in valid], again,
                                           already_parked=0, budget=reachable)

        self._applied(result, trace_ids)
        if invalid:
            self._park(invalid)
        return {"applied": result.applied, "stale": result.stale, "parked": len(invalid)}

    def _apply_holding(self, valid, apply):
        """``apply``, and while the database is unreachable (not merely failing) hold the
        message and try again when it answers: backpressure. The pool process takes nothing new
        meanwhile, so the worker stops at its prefetch window and the broker keeps the rest.
        Held at most ``hold_seconds`` (well inside the task's time limits), then the caller
        sends the message round the delay queue."""
        limit = self.app.conf.task_soft_time_limit or self.app.conf.task_time_limit or 300
        hold = min(self.subscriber.retry.hold_seconds, limit / 2)
        deadline = time.monotonic() + hold
        while True:
            try:
                result = apply(events=valid)
            except TRANSIENT_ERRORS as exc:
                _close_broken_db_connections()
                if database_reachable() or time.monotonic() >= deadline:
                    raise
                pause_begin(self.subscriber, exc)
                while time.monotonic() < deadline and not database_reachable():
                    time.sleep(1.0)  # bounded by the hold; one probe a second
                if database_reachable():
                    pause_end(self.subscriber)
                elif time.monotonic() >= deadline:
                    raise
            else:
                # a write went through: if this worker was paused (this process or another one
                # held messages that went round the delay queue meanwhile), it has resumed
                if _paused_here or _pause_marker(self.subscriber).exists():
                    pause_end(self.subscriber)
                return result

    def _retry_or_park(self, good: list[dict], exc: Exception, already_parked: int,
                       budget: bool = True):
        retry = self.subscriber.retry
        if budget and self.request.retries >= retry.max_retries:
            reason = (f"retry budget spent ({self.request.retries} retries): "
                      f"{type(exc).__name__}: {exc}")
            self._park([(ev, reason) for ev in good])
            return {"applied": 0, "stale": 0, "parked": len(good) + already_parked}
        countdown = retry.countdown(self.request.retries)
        self.subscriber.metrics.retried()
        logger.warning("transient error applying %d events (%s); retry %d in %ds",
                       len(good), exc, self.request.retries + 1, countdown)
        sub = self.subscriber.subscription
        with self._publishing():
            try:
                with confirming_producer(self.app) as producer:  # sent and confirmed, or raises
                    # Through the subscriber's own delay queues (catalog_project/topology.py):
                    # the message waits `countdown` seconds there, then comes back to its queue.
                    signal = self.retry(kwargs=contract.task_kwargs(good), exc=exc, countdown=0,
                                        exchange=sub.delay_entry,
                                        routing_key=sub.delayed_routing_key(countdown),
                                        producer=producer, throw=False,
                                        kwargsrepr=contract.task_summary(good),
                                        **publish_options())
            except Reject as rejected:  # Task.retry turns a failed publish into Reject(exc)
                if isinstance(rejected.reason, confirming.PUBLISH_UNKNOWN):
                    raise rejected.reason from None
                raise
        raise signal from exc

    def _park(self, items) -> None:
        with self._publishing():
            parking.park_events(app=self.app, request=self.request, items=items)

    @contextlib.contextmanager
    def _publishing(self):
        """A park or retry publish that got no confirm within its bounds (a broker alarm, the
        broker away): its outcome is unknown, so the original message is neither acked nor
        dead-lettered. This pool process holds it for a pause (doubling per delivery) and then
        requeues it (docs/operations.md, "During a broker alarm"); the consumer loop and the
        other pool processes go on meanwhile."""
        try:
            yield
        except confirming.PUBLISH_UNKNOWN as exc:
            # well inside the task's soft time limit (which would fail the task instead)
            limit = self.app.conf.task_soft_time_limit or self.app.conf.task_time_limit or 300
            pause = min(confirming.publish_failed_pause(self.request.get("x-delivery-count")),
                        limit / 2)
            logger.warning("publish failed (%s: %s); message %s requeued in %.0fs",
                           type(exc).__name__, exc, self.request.id, pause)
            time.sleep(pause)  # bounded; keeps the message from spinning through its limit
            raise Reject(f"publish failed: {type(exc).__name__}: {exc}", requeue=True) from exc

    def _applied(self, result, trace_ids) -> None:
        """Metrics, and one log line per batch naming what changed and the trace id(s)."""
        self.subscriber.metrics.applied(result.applied_events, result.stale)
        if logger.isEnabledFor(logging.INFO):
            logger.info("applied %d, stale %d: %s", result.applied, result.stale,
                        contract.task_summary([ev.as_dict() for ev in result.applied_events]),
                        extra={"trace_ids": trace_ids[:100]})

    def _apply_one_by_one(self, valid, invalid, first_error, apply):
        logger.warning("batch failed (%s); applying its %d events one by one", first_error,
                       len(valid))
        applied = stale = 0
        for event in valid:
            try:
                result = apply(events=[event])
            except TRANSIENT_ERRORS:
                raise  # the database went away mid-pass: handled like the batch (held, retried)
            except Exception as exc:  # noqa: BLE001
                reason = f"cannot be stored: {type(exc).__name__}: {exc}".strip()
                invalid.append((event.as_dict(), reason))
                continue
            applied += result.applied
            stale += result.stale
            self._applied(result, [event.trace_id] if event.trace_id else [])
        if invalid:
            self._park(invalid)
        return {"applied": applied, "stale": stale, "parked": len(invalid)}


def _close_broken_db_connections() -> None:
    for conn in connections.all():
        conn.close_if_unusable_or_obsolete()


def database_reachable() -> bool:
    """Does the subscriber's database answer now (a fresh connection and ``SELECT 1``)?"""
    conn = connections["default"]
    try:
        conn.close_if_unusable_or_obsolete()
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return True
    except TRANSIENT_ERRORS:
        with contextlib.suppress(Exception):
            conn.close()
        return False


# One line when a worker pauses and one when it resumes, whichever pool process notices: a
# marker file per worker (its main process's pid) says whether the pause is already reported.
def _pause_marker(subscriber) -> Path:
    return Path(tempfile.gettempdir()) / f"{subscriber.name}-worker-{os.getppid()}.paused"


_paused_here = False  # this pool process set the paused gauge


def pause_begin(subscriber, exc: BaseException) -> None:
    global _paused_here
    _paused_here = True
    subscriber.metrics.paused(True)
    try:
        fd = os.open(_pause_marker(subscriber), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    logger.warning("paused: the %s database is unreachable (%s: %s); holding the messages in "
                   "hand and taking no new ones until it answers (nothing is parked for this)",
                   subscriber.name, type(exc).__name__, str(exc).strip()[:200])


def pause_end(subscriber) -> None:
    global _paused_here
    _paused_here = False
    subscriber.metrics.paused(False)
    try:
        _pause_marker(subscriber).unlink()
    except FileNotFoundError:
        return
    logger.warning("resumed: the %s database answers again", subscriber.name)
