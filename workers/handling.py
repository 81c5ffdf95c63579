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

from billiard.exceptions import WorkerLostError
from celery import Task
from celery.exceptions import Reject
from celery.worker.request import Request
from celery.worker.state import task_ready
from django.db import connections

from common.trace import trace_id_set
from product_events import contract
from workers import confirming, parking, pool
from workers.confirming import confirming_producer, publish_options
from workers.errors import CONNECTION_ERRORS, sqlstate, transient
from workers.grouping import GroupFailed

logger = logging.getLogger("workers.handling")
contract.schema_validator()  # compile the JSON Schema once, before the pool forks

# What is parked and what is held and retried: workers/errors.py.
TRANSIENT_ERRORS = CONNECTION_ERRORS  # connection-level errors: a probe, a reconnect


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


class _SettleLog:
    """What kombu's ``ack_log_error`` / ``reject_log_error`` report a failed ack or reject to
    (``logger.critical`` with a traceback, by default). It fails when the connection the message
    came on goes while the ack or reject is on its way (one whose channel was already closed is
    not tried: ``_channel_gone``). Nothing is lost: the broker delivers the message again, and
    the write is idempotent. One warning line."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id

    def critical(self, msg, *args, **_kwargs) -> None:
        logger.warning("task %s: " + msg + " (its connection is gone: the broker delivers the "
                       "message again; the write is idempotent)", self.task_id, *args)


class ProductEventsRequest(Request):
    """Celery's request, except that a message that keeps killing its pool process is parked
    (with ``x-park-reason``) after ``WORKER_LOST_LIMIT`` runs, instead of being requeued until
    the broker's delivery limit. Runs in the worker's main process.

    With a pool that runs tasks in the worker's own process (workers/pool.py) the task gets the
    body the consumer already decoded (workers/preflight.py), instead of decoding it again."""

    def send_event(self, type, **fields):
        # Flower sees every task from its "received" and "succeeded" (or "failed", "retried")
        # events, with the run time in the last one; "task-started" is not sent: one publish
        # per message less, for a state Flower shows for a few milliseconds.
        if type != "task-started":
            super().send_event(type, **fields)

    def __init__(self, message, *args, body=None, decoded=False, **kwargs):
        if not decoded and pool.IN_PROCESS:
            cached = getattr(message, "_decoded_cache", None)
            if cached is not None:
                body, decoded = cached, True
        super().__init__(message, *args, body=body, decoded=decoded, **kwargs)
        if pool.IN_PROCESS:  # DeliveryLost: the task compares
            self._request_dict["worker_connections_lost"] = pool.connections_lost()

    def acknowledge(self):
        if not self.acknowledged:
            if not self._channel_gone("acked"):
                self._on_ack(_SettleLog(self.id), self._connection_errors)
            self.acknowledged = True

    def reject(self, requeue=False):
        if not self.acknowledged:
            if not self._channel_gone("rejected"):
                self._on_reject(_SettleLog(self.id), self._connection_errors, requeue)
            self.acknowledged = True
            self.send_event("task-rejected", requeue=requeue)

    def _channel_gone(self, what: str) -> bool:
        """The channel the message came on was closed with its connection (the consumer has
        said so, with how many messages it had in hand: workers/consumer.py): nothing can be
        sent on it, and the broker delivers the message again."""
        channel = self.message.channel
        if channel is not None and getattr(channel, "connection", True) is None:
            logger.debug("task %s: message not %s, its connection is gone (delivered again)",
                         self.id, what)
            return True
        return False

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


class DeliveryLost(Reject):
    """The broker connection this task's message came on was lost before or while the task ran
    (a thread of workers/pool.py; Celery stops a prefork pool process itself). Its message can
    no longer be acked or sent round the delay queue from here, and the broker delivers it
    again: the task stops instead of holding the database for it or publishing a second copy."""

    def __init__(self) -> None:
        super().__init__("its broker connection was lost while it ran; the broker delivers "
                         "the message again", requeue=True)


class _DeliveryLostLine(logging.Filter):
    """Celery logs a rejected task as a warning with its traceback; a ``DeliveryLost`` is an
    expected outcome, and its one line ("reject requeue=True: its broker connection was lost
    ...") says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], DeliveryLost):
            # the consumer's warning for the loss counted this message: INFO, no traceback
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("celery.app.trace").addFilter(_DeliveryLostLine())


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
        # a message taken in on a connection since lost (waiting for a thread meanwhile): its
        # copy is on its way again; writing or parking it here would only do the work twice
        self._delivery_check()
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
        except DeliveryLost:
            raise
        except Exception as exc:  # noqa: BLE001
            if transient(exc):
                # held for the whole hold and still failing: the message goes round the
                # subscriber's delay queue (a new message: its delivery count starts again);
                # nothing is parked for it, however long it lasts
                _close_broken_db_connections()
                if invalid:  # park the bad ones now; retry only the good ones
                    self._park(invalid)
                return self._retry([ev.as_dict() for ev in valid], exc)
            # The database (or apply) refused something in this message. Find the culprits one
            # by one so that the good events of this batch still land.
            try:
                return self._apply_one_by_one(valid, invalid, first_error=exc, apply=apply)
            except Exception as again:  # the database went away meanwhile: retry them all
                if not transient(again):
                    raise
                _close_broken_db_connections()
                return self._retry([ev.as_dict() for ev in valid], again)

        self._applied(result)
        if invalid:
            self._park(invalid)
        return self._outcome(result.applied, result.stale, len(invalid), result.applied_events,
                             trace_ids)

    def _apply_holding(self, valid, apply):
        """``apply``, and while it fails for a reason about the database rather than the
        events (``transient``: unreachable, read-only, out of disk, locked, ...), hold the
        message and try again: backpressure. The pool process (or thread) takes nothing new
        meanwhile, so the worker stops at its prefetch window and the broker keeps the rest.
        While the database does not answer, one probe a second; while it answers but refuses,
        the write itself again after a pause doubling from 0.2 s up to ``backoff_max`` (5 s).
        A failure that lasts
        (a second, or an unreachable database) pauses the worker: one log line, the paused
        gauge. Held at most ``hold_seconds`` (well inside the task's time limits), then the
        caller sends the message round the delay queue."""
        limit = self.app.conf.task_soft_time_limit or self.app.conf.task_time_limit or 300
        hold = min(self.subscriber.retry.hold_seconds, limit / 2)
        deadline = time.monotonic() + hold
        group = self.subscriber.group_commit(apply)
        first_failure, pause = None, 0.2
        while True:
            try:
                if first_failure is not None:
                    # once failed, this task writes alone until it succeeds: a task held by a
                    # locked row or a refusing database never joins (and stalls) a new group
                    result = apply(events=valid)
                else:
                    try:
                        result = group.apply(valid)
                    except GroupFailed:
                        # the write shared with other tasks failed: perhaps for another task's
                        # event; this task's own events alone next (a failure there is its own)
                        result = apply(events=valid)
            except Exception as exc:  # noqa: BLE001
                if not transient(exc):
                    raise
                _close_broken_db_connections()
                self._delivery_check()
                now = time.monotonic()
                first_failure = first_failure or now
                reachable = database_reachable()
                if not reachable or now - first_failure >= 1.0:  # not a passing deadlock
                    pause_begin(self.subscriber, exc, reachable=reachable)
                if now >= deadline or (sqlstate(exc) == LOCK_NOT_AVAILABLE
                                       and now - first_failure >= LOCK_HOLD_SECONDS):
                    # a row lock may be held for long: its message goes round the delay queue
                    # rather than keep a pool thread (the next messages for that row would
                    # take every thread, one by one, and the worker would stop)
                    raise
                if reachable:
                    time.sleep(min(pause, deadline - now))
                    pause = min(pause * 2, self.subscriber.retry.backoff_max)
                else:
                    while time.monotonic() < deadline and not database_reachable():
                        time.sleep(1.0)  # bounded by the hold; one probe a second
            else:
                # a write went through: if this worker was paused (this process or another one
                # held messages that went round the delay queue meanwhile), it has resumed
                if _pause_reported(self.subscriber):
                    pause_end(self.subscriber)
                return result

    def _retry(self, good: list[dict], exc: Exception):
        """Send the message's valid events round the subscriber's delay queue: back in its queue
        after ``RetryPolicy.countdown`` seconds, a new message. Never parked: after
        ``max_retries`` rounds each further one is logged as an error (the alert
        ``RetriesNeverClear`` fires on the retries counter)."""
        self._delivery_check()
        retry = self.subscriber.retry
        rounds = self.request.retries + 1
        countdown = retry.countdown(0)  # the hold did the waiting: back soon after it ends
        self.subscriber.metrics.retried()
        log = logger.error if rounds > retry.max_retries else logger.warning
        log("transient error applying %d events (%s: %s); round %d through the delay queue, "
            "back in %ds (held %.0fs each round; never parked for this)", len(good),
            type(exc).__name__, str(exc).strip()[:300], rounds, countdown, retry.hold_seconds)
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

    def _delivery_check(self) -> None:
        """Raise ``DeliveryLost`` if the broker connection this task's message came on is gone
        (threads only: the count is in the request of an in-process pool)."""
        received_after = self.request.get("worker_connections_lost")
        if received_after is not None and received_after != pool.connections_lost():
            raise DeliveryLost() from None

    def _park(self, items) -> None:
        # once the connection is gone, its redelivery parks them (a loss between this publish
        # and the ack still leaves two copies: parking is at least once, docs/operations.md)
        self._delivery_check()
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

    def _applied(self, result) -> None:
        self.subscriber.metrics.applied(result.applied_events, result.stale)

    @staticmethod
    def _outcome(applied: int, stale: int, parked: int, applied_events, trace_ids) -> dict:
        """The task's result, and its one log line: what changed, and the trace id(s). (Celery's
        own "received" and "succeeded" lines per task are off: catalog_project/settings.)"""
        if logger.isEnabledFor(logging.INFO):
            logger.info("applied %d, stale %d, parked %d: %s", applied, stale, parked,
                        contract.events_summary(applied_events),
                        extra={"trace_ids": trace_ids[:100]})
        return {"applied": applied, "stale": stale, "parked": parked}

    def _apply_one_by_one(self, valid, invalid, first_error, apply):
        logger.warning("batch failed (%s); applying its %d events one by one", first_error,
                       len(valid))
        stale, changed = 0, []
        for event in valid:
            try:
                result = apply(events=[event])
            except Exception as exc:  # noqa: BLE001
                if transient(exc):
                    raise  # the database went away mid-pass: handled like the batch (retried)
                reason = f"cannot be stored: {type(exc).__name__}: {exc}".strip()
                invalid.append((event.as_dict(), reason))
                continue
            stale += result.stale
            changed += result.applied_events
            self._applied(result)
        if invalid:
            self._park(invalid)
        trace_ids = sorted({ev.trace_id for ev in changed if ev.trace_id})
        return self._outcome(len(changed), stale, len(invalid), changed, trace_ids)


LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout (CATALOG_DB_LOCK_TIMEOUT_SECONDS) ran out
LOCK_HOLD_SECONDS = 5.0


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


# One line when a worker pauses and one when it resumes, whichever pool process or thread
# notices: a marker file per worker (its main process's pid) says whether the pause is already
# reported. Imported by the main process before a prefork pool forks: the main process's pid.
_WORKER_PID = os.getpid()


def _pause_marker(subscriber) -> Path:
    return Path(tempfile.gettempdir()) / f"{subscriber.name}-worker-{_WORKER_PID}.paused"


_paused_here = False  # this pool process set the paused gauge
_marker_checked = 0.0
# A pause that begins within RELAPSE_SECONDS of this process's last resume is the same outage
# going on (a lock taken and released again and again, deadlocks one after another): it is not
# logged again, nor its resume, unless it lasts RELAPSE_SECONDS; the gauge follows every pause.
# The marker says whether its pause was logged ("<reason> logged" or "<reason> silent"), so the
# resume is logged by whichever process or thread sees it, as its pause was.
RELAPSE_SECONDS = 60.0
_last_resume = -RELAPSE_SECONDS  # monotonic time of this process's last resume
_pause_since = 0.0               # monotonic time this process's current pause began


def _pause_reported(subscriber) -> bool:
    """Is this worker paused (by this process, or by another pool process: its marker)? The
    marker is looked at once a second at most: not a file system call per message."""
    global _marker_checked
    if _paused_here:
        return True
    now = time.monotonic()
    if now - _marker_checked < 1.0:
        return False
    _marker_checked = now
    return _pause_marker(subscriber).exists()


def _pause_log(subscriber, exc: BaseException, reachable: bool) -> None:
    what = "refuses writes" if reachable else "is unreachable"
    logger.warning("paused: the %s database %s (%s: %s); holding the messages in hand and "
                   "taking no new ones until it takes them (nothing is parked for this)",
                   subscriber.name, what, type(exc).__name__, str(exc).strip()[:200])


def pause_begin(subscriber, exc: BaseException, *, reachable: bool = False) -> None:
    global _paused_here, _pause_since
    now = time.monotonic()
    if not _paused_here:
        _pause_since = now
    _paused_here = True
    reason = "refused" if reachable else "unreachable"
    marker = _pause_marker(subscriber)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        # paused already: a relapse not logged yet is, once it has lasted RELAPSE_SECONDS
        if now - _pause_since >= RELAPSE_SECONDS:
            with contextlib.suppress(OSError):
                if marker.read_text().endswith(" silent"):
                    marker.write_text(f"{reason} logged")
                    _pause_log(subscriber, exc, reachable)
        return
    logged = now - _last_resume >= RELAPSE_SECONDS
    os.write(fd, f"{reason} {'logged' if logged else 'silent'}".encode())
    os.close(fd)
    if logged:
        _pause_log(subscriber, exc, reachable)


def pause_end(subscriber) -> None:
    global _paused_here, _last_resume
    _paused_here = False
    _last_resume = time.monotonic()
    marker = _pause_marker(subscriber)
    try:
        said = marker.read_text()
        marker.unlink()
    except FileNotFoundError:
        return
    if said.endswith(" silent"):  # a relapse of the outage logged before it, over again
        logger.info("resumed again: the %s database takes writes", subscriber.name)
    else:
        logger.warning("resumed: the %s database takes writes again", subscriber.name)


def pause_end_quietly(subscriber) -> None:
    """A worker stopping: its pause marker goes with it (the next worker decides anew)."""
    with contextlib.suppress(FileNotFoundError):
        _pause_marker(subscriber).unlink()


def pause_state(subscriber) -> str | None:
    """None, or why this worker is paused ("unreachable" or "refused"): read from its marker in
    the worker's main process (the paused gauge, at scrape time: a pool process killed while
    paused leaves nothing stale behind it)."""
    try:
        return (_pause_marker(subscriber).read_text().split() or ["unreachable"])[0]
    except FileNotFoundError:
        return None


def pause_markers_clean(subscriber) -> None:
    """Remove the markers of this subscriber's workers that are gone (killed while paused): a
    new worker, or the healthcheck, must not read another one's pause as its own."""
    for path in Path(tempfile.gettempdir()).glob(f"{subscriber.name}-worker-*.paused"):
        try:
            pid = int(path.stem.rsplit("-", 1)[1].split(".")[0])
        except ValueError:
            continue
        if pid != _WORKER_PID and not _alive(pid):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
