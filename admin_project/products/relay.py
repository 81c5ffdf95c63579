"""The outbox relay: publishes pending outbox rows to RabbitMQ as Celery task messages.

Guarantees (see docs/architecture.md):
* A row is marked sent only after the broker confirmed its message (publisher confirms), in the
  same transaction that claimed it. A crash in between re-sends it: duplicates, never loss.
* ``mandatory``: a message no queue is bound for is returned by the broker and raises; the rows
  stay pending (an unroutable event is an error, not a silent drop).
* No blind publish retries: a failed publish is "unknown", the row stays pending, the loop backs
  off (capped exponential, with jitter) and tries again.
* Rows are claimed with ``FOR UPDATE SKIP LOCKED``: several relays never claim the same rows.
* Events of one type are batched into one message (up to RELAY_MAX_EVENTS_PER_MESSAGE).
"""

from __future__ import annotations

import logging
import os
import random
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from itertools import groupby

from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone
from kombu import Exchange
from prometheus_client import Counter, Gauge

from admin_project.celery_app import app as celery_app
from product_events import contract

from .models import OutboxEvent
from .services import OUTBOX_CHANNEL

logger = logging.getLogger("admin_project.relay")

PRODUCTS_EXCHANGE = Exchange(contract.EXCHANGE, contract.EXCHANGE_TYPE, durable=True)


EVENTS_PUBLISHED = Counter("relay_events_published",
                           "Events confirmed by the broker (then marked sent).")
MESSAGES_PUBLISHED = Counter("relay_messages_published",
                             "Task messages confirmed by the broker (each carries 1+ events).")
PUBLISH_FAILURES = Counter("relay_publish_failures",
                           "Failed claim/publish cycles (events stayed pending, retried).")
HEARTBEAT = Gauge("relay_heartbeat_timestamp_seconds", "When the relay loop last went round.")


@dataclass
class RelayStats:
    published_events: int = 0
    published_messages: int = 0
    failures: int = 0


class Publisher:
    """One broker connection (publisher confirms on), reused across publishes and dropped on the
    first error so the next attempt starts clean. Declares the products exchange on connect."""

    def __init__(self, app=celery_app) -> None:
        self.app = app
        self._conn = None
        self._producer = None

    def producer(self):
        if self._producer is None:
            conn = self.app.connection_for_write()
            try:
                conn.ensure_connection(max_retries=1)
                PRODUCTS_EXCHANGE.declare(channel=conn.default_channel)
                self._producer = conn.Producer(channel=conn.default_channel)
            except Exception:
                conn.release()
                raise
            self._conn = conn
        return self._producer

    def reset(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - it is already broken
                pass

    close = reset


# Claim and mark in one statement; the transaction stays open until the broker confirmed the
# messages, so a crash or a failed publish rolls the rows back to pending (SKIP LOCKED: several
# relays never claim the same rows). payload::text is spliced into the message as it is.
_CLAIM = """
UPDATE products_outboxevent SET sent_at = now()
WHERE id IN (SELECT id FROM products_outboxevent WHERE sent_at IS NULL
             ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING id, type, product_id, version, event_id::text, payload::text, payload->>'trace_id'
"""
_UNSEND = "UPDATE products_outboxevent SET sent_at = NULL WHERE id = ANY(%s)"
_EMBED = '{"callbacks": null, "errbacks": null, "chain": null, "chord": null}'
_ORIGIN = f"relay@{socket.gethostname()}"


def outbox_publish_pending(*, publisher: Publisher | None = None, app=celery_app,
                           claim_size: int | None = None,
                           max_events_per_message: int | None = None,
                           stats: RelayStats | None = None) -> int:
    """Claim up to ``claim_size`` pending rows, publish them, keep the confirmed ones sent.

    Returns the number of events published. Raises if a publish failed (after returning the
    unconfirmed rows to pending); the publisher is then reset."""
    if publisher is None:
        publisher = Publisher(app)
        try:
            return outbox_publish_pending(publisher=publisher, claim_size=claim_size,
                                          max_events_per_message=max_events_per_message,
                                          stats=stats)
        finally:
            publisher.close()
    claim_size = claim_size or settings.RELAY_CLAIM_SIZE
    per_message = max_events_per_message or settings.RELAY_MAX_EVENTS_PER_MESSAGE
    error: BaseException | None = None
    sent_ids: list[int] = []
    published: list[tuple[list[tuple], str]] = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CLAIM, [claim_size])
        rows = cursor.fetchall()
        if not rows:
            return 0
        try:
            producer = publisher.producer()
            rows.sort(key=lambda r: (r[1], r[0]))
            for event_type, group in groupby(rows, key=lambda r: r[1]):
                group = list(group)
                for start in range(0, len(group), per_message):
                    chunk = group[start:start + per_message]
                    summary = _publish(producer, event_type, chunk)
                    sent_ids.extend(r[0] for r in chunk)
                    published.append((chunk, summary))
                    if stats:
                        stats.published_messages += 1
        except Exception as exc:  # noqa: BLE001 - any failure leaves the rest pending
            error = exc
            publisher.reset()
            sent = set(sent_ids)
            cursor.execute(_UNSEND, [[r[0] for r in rows if r[0] not in sent]])
    if stats:
        stats.published_events += len(sent_ids)
    EVENTS_PUBLISHED.inc(len(sent_ids))
    MESSAGES_PUBLISHED.inc(len(published))
    for chunk, summary in published:  # committed: these are sent for good
        _log_published(chunk, summary)
    if error is not None:
        raise error
    return len(sent_ids)


def _log_published(rows: list[tuple], summary: str) -> None:
    """One line per message, carrying the trace id(s) of its events (docs/operations.md)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    trace_ids = sorted({r[6] for r in rows if r[6]})
    logger.info("published %s", summary, extra={
        "trace_id": trace_ids[0] if len(trace_ids) == 1 else "-",
        "trace_ids": trace_ids[:100], "events": len(rows)})


def _publish(producer, event_type: str, rows: list[tuple]) -> str:
    """One Celery protocol-2 task message (docs/events.md) carrying ``rows``' events. Returns
    its summary (``kwargsrepr``), for the log line once it is committed."""
    # One event: the Celery task id is the event id, so Flower shows it and logs correlate.
    task_id = rows[0][4] if len(rows) == 1 else str(uuid.uuid4())
    summary = contract.task_summary([
        {"type": r[1], "product_id": r[2], "version": r[3], "event_id": r[4]} for r in rows])
    body = '[[], {"events": [' + ", ".join(r[5] for r in rows) + "]}, " + _EMBED + "]"
    headers = {
        "lang": "py", "task": contract.TASK_APPLY_PRODUCT_EVENTS, "id": task_id,
        "shadow": None, "eta": None, "expires": None, "group": None, "group_index": None,
        "retries": 0, "timelimit": [None, None], "root_id": task_id, "parent_id": None,
        "argsrepr": "[]", "kwargsrepr": summary, "origin": _ORIGIN, "ignore_result": True,
        "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }
    producer.publish(
        body.encode(), exchange=PRODUCTS_EXCHANGE,
        routing_key=contract.routing_key_for(event_type), headers=headers,
        content_type=contract.CONTENT_TYPE, content_encoding="utf-8", delivery_mode=2,
        correlation_id=task_id, reply_to="",
        mandatory=True,      # unroutable -> error, not a silent drop
        retry=False,         # no blind retries: a failed publish is "unknown", row stays pending
        confirm_timeout=settings.RELAY_CONFIRM_TIMEOUT,
        timeout=settings.RELAY_CONFIRM_TIMEOUT,
        declare=[],          # publishers declare only the exchange (at connect), never queues
    )
    return summary


def outbox_purge_sent(*, older_than: timedelta) -> int:
    deleted, _ = OutboxEvent.objects.filter(
        sent_at__isnull=False, sent_at__lt=timezone.now() - older_than
    ).delete()
    return deleted


def exchange_declare(*, app=celery_app) -> None:
    publisher = Publisher(app)
    try:
        publisher.producer()
    finally:
        publisher.close()


class OutboxListener:
    """A dedicated connection LISTENing for the NOTIFY sent by each committed change."""

    def __init__(self) -> None:
        self._wrapper = None

    def _connect(self):
        self.close()
        self._wrapper = connections.create_connection("default")
        self._wrapper.ensure_connection()
        raw = self._wrapper.connection
        raw.autocommit = True
        with raw.cursor() as cur:
            cur.execute(f"LISTEN {OUTBOX_CHANNEL}")
        return raw

    def wait(self, timeout: float, wake_fd: int | None = None) -> bool:
        """Block until a change committed, ``wake_fd`` is readable, or ``timeout`` passed.
        True if notified."""
        try:
            raw = self._wrapper.connection if self._wrapper else self._connect()
            if raw.notifies:
                raw.notifies.clear()
                return True
            fds = [raw] if wake_fd is None else [raw, wake_fd]
            ready, _, _ = select.select(fds, [], [], timeout)
            if raw in ready:
                raw.poll()
                notified = bool(raw.notifies)
                raw.notifies.clear()
                return notified
            return False
        except Exception:  # noqa: BLE001 - database gone: sleep, reconnect next time
            logger.warning("outbox listener lost its database connection; reconnecting")
            self.close()
            time.sleep(min(timeout, 1.0))
            return False

    def close(self) -> None:
        if self._wrapper is not None:
            try:
                self._wrapper.close()
            except Exception:  # noqa: BLE001
                pass
            self._wrapper = None


class Relay:
    def __init__(self, *, app=celery_app, sweep_seconds: float | None = None,
                 max_backoff: float | None = None) -> None:
        self.app = app
        self.publisher = Publisher(app)
        self.sweep_seconds = sweep_seconds or settings.RELAY_SWEEP_SECONDS
        self.max_backoff = max_backoff or settings.RELAY_MAX_BACKOFF_SECONDS
        self.stop_event = threading.Event()
        self.ready = threading.Event()  # set once listening and the first drain is done
        self._wake_r, self._wake_w = os.pipe()  # stop() wakes a waiting loop at once
        os.set_blocking(self._wake_w, False)
        self.stats = RelayStats()
        self._backoff = 0.0
        self._last_purge = 0.0
        self._last_report = time.monotonic()
        self._reported_events = 0
        self.linger = settings.RELAY_LINGER_SECONDS
        self.linger_max = settings.RELAY_LINGER_MAX_SECONDS
        self.heartbeat_file = settings.RELAY_HEARTBEAT_FILE
        self._last_beat = 0.0

    def stop(self, *_args) -> None:
        """Ask the loop to finish (safe to call from a signal handler or another thread)."""
        self.stop_event.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def run_once(self) -> int:
        """Publish everything pending now. Raises on the first failure."""
        total = 0
        claim = settings.RELAY_CLAIM_SIZE
        while not self.stop_event.is_set():
            n = outbox_publish_pending(publisher=self.publisher, stats=self.stats,
                                       claim_size=claim)
            total += n
            if n < claim:  # drained (a commit since then has sent a NOTIFY: we wake again)
                break
        return total

    def run_forever(self) -> None:
        listener = OutboxListener()
        # LISTEN before the first drain: a change committed in between still wakes us.
        listener.wait(0, wake_fd=self._wake_r)
        try:
            self.publisher.producer()  # connect now, not on the first event
        except Exception as exc:  # noqa: BLE001 - the loop below retries with backoff
            logger.warning("broker not reachable yet (%s); events will wait in the outbox", exc)
            self.publisher.reset()
        logger.info("relay started (sweep every %.1fs, up to %d events per message)",
                    self.sweep_seconds, settings.RELAY_MAX_EVENTS_PER_MESSAGE)
        last_busy = 0.0
        last_batch = 0
        try:
            while not self.stop_event.is_set():
                self._beat()
                try:
                    n = self.run_once()
                    last_batch = n
                    if n:
                        last_busy = time.monotonic()
                        self._report()
                    if self._backoff:
                        logger.info("broker reachable again; relay resumed")
                    self._backoff = 0.0
                    self.ready.set()
                    self._maybe_purge()
                except Exception as exc:  # noqa: BLE001
                    self._on_failure(exc)
                    continue
                notified = listener.wait(self.sweep_seconds, wake_fd=self._wake_r)
                if notified and time.monotonic() - last_busy < 0.05 and self.linger:
                    # Busy: let more commits land so they share one claim and one message. The
                    # wait grows with the last batch (more load, bigger batches, less CPU per
                    # event) and is capped, so a quiet system stays at ~2 ms.
                    self.stop_event.wait(min(self.linger_max, self.linger * max(1, last_batch)))
        finally:
            listener.close()
            self.publisher.close()
            connections.close_all()
            logger.info("relay stopped (%d events published)", self.stats.published_events)

    def _beat(self) -> None:
        """Liveness: the loop went round (``manage.py relay --check`` reads the file)."""
        now = time.time()
        if now - self._last_beat < 1.0:
            return
        self._last_beat = now
        HEARTBEAT.set(now)
        if self.heartbeat_file:
            try:
                with open(self.heartbeat_file, "w") as f:
                    f.write(f"{now:.3f}\n")
            except OSError as exc:
                logger.warning("cannot write heartbeat file %s: %s", self.heartbeat_file, exc)

    def _report(self) -> None:
        """One INFO line per 10 s of activity (a line per publish costs real CPU under load)."""
        now = time.monotonic()
        if now - self._last_report >= 10:
            n = self.stats.published_events - self._reported_events
            logger.info("published %d events in %.0fs (total %d, %d messages)", n,
                        now - self._last_report, self.stats.published_events,
                        self.stats.published_messages)
            self._last_report, self._reported_events = now, self.stats.published_events
        logger.debug("published (total %d)", self.stats.published_events)

    def _on_failure(self, exc: BaseException) -> None:
        self.stats.failures += 1
        PUBLISH_FAILURES.inc()
        self.publisher.reset()
        self._backoff = min(self.max_backoff, max(0.5, self._backoff * 2))
        delay = self._backoff * random.uniform(0.5, 1.0)
        logger.warning("publish failed (%s: %s); events stay pending, retrying in %.1fs",
                       type(exc).__name__, exc, delay)
        for conn in connections.all():
            conn.close_if_unusable_or_obsolete()
        self.stop_event.wait(delay)

    def _maybe_purge(self) -> None:
        if time.monotonic() - self._last_purge < 60:
            return
        self._last_purge = time.monotonic()
        n = outbox_purge_sent(older_than=timedelta(hours=settings.OUTBOX_RETENTION_HOURS))
        if n:
            logger.info("purged %d sent outbox rows older than %sh", n,
                        settings.OUTBOX_RETENTION_HOURS)
