"""Publish claimed outbox rows to RabbitMQ, one claim-publish-commit cycle at a time.

* A row is marked sent only after the broker confirmed its message (publisher confirms), in the
  same transaction that claimed it. A crash in between re-sends it: duplicates, never loss.
* ``mandatory``: a message no queue is bound for is returned by the broker and raises; the rows
  stay pending (an unroutable event is an error, not a silent drop).
* No blind publish retries: a failed publish is "unknown", the row stays pending, the loop backs
  off and tries again.
* Events of one type are batched into one message (up to RELAY_MAX_EVENTS_PER_MESSAGE)."""

from __future__ import annotations

import logging
import socket
from itertools import groupby

from django.conf import settings
from django.db import connection, transaction
from kombu import Exchange
from prometheus_client import Counter

from admin_project.celery_app import app as celery_app
from product_events import contract
from product_events.message import TaskMessage, task_message_encode

from .claim import ClaimedEvent, outbox_claim, outbox_unclaim

logger = logging.getLogger("admin_project.relay")

PRODUCTS_EXCHANGE = Exchange(contract.EXCHANGE, contract.EXCHANGE_TYPE, durable=True)
ORIGIN = f"relay@{socket.gethostname()}"

EVENTS_PUBLISHED = Counter("relay_events_published",
                           "Events confirmed by the broker (then marked sent).")
MESSAGES_PUBLISHED = Counter("relay_messages_published",
                             "Task messages confirmed by the broker (each carries 1+ events).")


class Publisher:
    """One broker connection (publisher confirms on), reused across publishes and dropped on the
    first error so the next attempt starts clean. Declares the products exchange on connect
    (publishers declare only the exchange, never queues)."""

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

    def publish(self, message: TaskMessage) -> None:
        """Send one message and wait for the broker's confirm (raises if it does not come)."""
        self.producer().publish(
            message.body, exchange=PRODUCTS_EXCHANGE, routing_key=message.routing_key,
            headers=message.headers, **message.properties,
            mandatory=True,      # unroutable -> error, not a silent drop
            retry=False,         # no blind retries: a failed publish is "unknown"
            confirm_timeout=settings.RELAY_CONFIRM_TIMEOUT,
            timeout=settings.RELAY_CONFIRM_TIMEOUT,
            declare=[],
        )

    def reset(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - it is already broken
                pass

    close = reset


def outbox_publish_pending(*, publisher: Publisher | None = None, app=celery_app,
                           claim_size: int | None = None,
                           max_events_per_message: int | None = None) -> int:
    """Claim up to ``claim_size`` pending rows, publish them, keep the confirmed ones sent.

    Returns the number of events published. Raises if a publish failed (after returning the
    unconfirmed rows to pending); the publisher is then reset."""
    if publisher is None:
        publisher = Publisher(app)
        try:
            return outbox_publish_pending(publisher=publisher, claim_size=claim_size,
                                          max_events_per_message=max_events_per_message)
        finally:
            publisher.close()
    claim_size = claim_size or settings.RELAY_CLAIM_SIZE
    per_message = max_events_per_message or settings.RELAY_MAX_EVENTS_PER_MESSAGE
    error: BaseException | None = None
    sent: list[tuple[list[ClaimedEvent], TaskMessage]] = []
    with transaction.atomic(), connection.cursor() as cursor:
        rows = outbox_claim(cursor=cursor, limit=claim_size)
        if not rows:
            return 0
        try:
            rows.sort(key=lambda r: (r.type, r.id))
            for _event_type, group in groupby(rows, key=lambda r: r.type):
                group = list(group)
                for start in range(0, len(group), per_message):
                    chunk = group[start:start + per_message]
                    message = task_message_encode(events=[r.ref() for r in chunk],
                                                  events_json=[r.payload for r in chunk],
                                                  origin=ORIGIN)
                    publisher.publish(message)
                    sent.append((chunk, message))
        except Exception as exc:  # noqa: BLE001 - any failure leaves the rest pending
            error = exc
            publisher.reset()
            done = {r.id for chunk, _ in sent for r in chunk}
            outbox_unclaim(cursor=cursor, ids=[r.id for r in rows if r.id not in done])
    events = sum(len(chunk) for chunk, _ in sent)
    EVENTS_PUBLISHED.inc(events)
    MESSAGES_PUBLISHED.inc(len(sent))
    for chunk, message in sent:  # committed: these are sent for good
        _log_published(chunk, message.summary)
    if error is not None:
        raise error
    return events


def _log_published(rows: list[ClaimedEvent], summary: str) -> None:
    """One line per message, carrying the trace id(s) of its events (docs/operations.md)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    trace_ids = sorted({r.trace_id for r in rows if r.trace_id})
    logger.info("published %s", summary, extra={
        "trace_id": trace_ids[0] if len(trace_ids) == 1 else "-",
        "trace_ids": trace_ids[:100], "events": len(rows)})
