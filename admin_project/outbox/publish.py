"""Publish claimed outbox rows to RabbitMQ, one claim-publish-commit cycle at a time.

* A row is marked sent only after the broker confirmed its message (publisher confirms), in the
  same transaction that claimed it. A crash in between re-sends it: duplicates, never loss.
* ``mandatory``: a message no queue is bound for is returned by the broker and raises; the rows
  stay pending (an unroutable event is an error, not a silent drop).
* No blind publish retries: a failed publish is "unknown", the row stays pending, the loop backs
  off and tries again.
* Events of one type are batched into one message, up to RELAY_MAX_EVENTS_PER_MESSAGE events and
  RELAY_MAX_MESSAGE_BYTES bytes of body (or the broker's ``max_message_size``, once it refused
  a message: the relay then keeps below the limit the broker named).
* An event that can never be sent (alone it makes a message above the limit, or its type is not
  one of the contract's) is **set aside**: taken out of the pending rows with its reason, counted
  (``relay_events_set_aside``, ``outbox_set_aside_events``) and logged, so it never holds the
  rest back. docs/operations.md says how to return it to pending once the cause is fixed."""

from __future__ import annotations

import logging
import re
import socket
import time
from itertools import groupby
from typing import NamedTuple

from amqp.exceptions import MessageNacked, PreconditionFailed
from django.conf import settings
from django.db import connection, transaction
from prometheus_client import Counter

from admin_project.celery_app import app as celery_app
from common.trace import trace_id_get
from product_events import contract
from product_events.broker import PRODUCTS_EXCHANGE, exchange_ensure
from product_events.message import TaskMessage, task_message_body_size, task_message_encode

from .claim import ClaimedEvent, outbox_claim, outbox_set_aside, outbox_unclaim
from .record import EncodedEvent

logger = logging.getLogger("admin_project.relay")

ORIGIN = f"relay@{socket.gethostname()}"

EVENTS_PUBLISHED = Counter("relay_events_published",
                           "Events confirmed by the broker (then marked sent).")
MESSAGES_PUBLISHED = Counter("relay_messages_published",
                             "Task messages confirmed by the broker (each carries 1+ events).")
SET_ASIDE = Counter("relay_events_set_aside",
                    "Events the relay can never send (too large, unknown type), set aside.")

# RabbitMQ's words when a message is above its max_message_size (406, the channel is closed).
_TOO_LARGE = re.compile(r"message size (\d+) is larger than configured max size (\d+)")


class PublishFailed(Exception):
    """``Publisher.publish_many`` failed (the cause is chained); ``confirmed`` of its messages,
    the first ones, were confirmed by the broker before it did."""

    def __init__(self, cause: BaseException, confirmed: int) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause, self.confirmed = cause, confirmed


class _Confirms:
    """The broker's confirms on one channel in confirm mode, by delivery tag (1, 2, ... in
    publish order): ``sent`` is the last tag published, ``settled`` the last one up to which every
    message is acked or nacked, ``confirmed`` the last one up to which every message is acked.
    (A quorum queue acks after its log write, while a full queue's nack comes at once: a nack
    may overtake the acks of messages before it.)"""

    def __init__(self, channel) -> None:
        self.sent = self.settled = self.confirmed = 0
        self.nacked = False
        self._ahead: dict[int, bool] = {}  # settled tags past ``settled``: acked?
        channel.events["basic_ack"].add(self._ack)
        channel.events["basic_nack"].add(self._nack)

    def _ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, True)

    def _nack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, False)

    def _settle(self, tag: int, multiple: bool, acked: bool) -> None:
        for t in range(self.settled + 1, tag + 1) if multiple else (tag,):
            self._ahead.setdefault(t, acked)
        while self.settled + 1 in self._ahead:
            self.settled += 1
            if not self._ahead.pop(self.settled):
                self.nacked = True
            elif self.confirmed == self.settled - 1:
                self.confirmed = self.settled

    def wait(self, conn, *, timeout: float) -> None:
        """Until every message sent is acked or nacked; raises if one was nacked or the
        broker does not settle them all within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.settled < self.sent:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                conn.drain_events(timeout=left)  # a basic.return raises here (mandatory)
            except TimeoutError:  # ours or the socket's: say what did not come
                raise TimeoutError(f"the broker did not confirm {self.sent - self.settled} "
                                   f"messages within {timeout} s") from None
        if self.nacked:
            raise MessageNacked("the broker refused a message (basic.nack)")


class Publisher:
    """One broker connection (publisher confirms on), reused across publishes and dropped on the
    first error so the next attempt starts clean. Checks on connect that the products exchange
    exists (product_events/broker.py: its owner declares it; the relay may only publish)."""

    def __init__(self, app=celery_app, max_message_bytes: int | None = None) -> None:
        self.app = app
        self._conn = None
        self._producer = None
        self._confirms: _Confirms | None = None  # of the producer's channel
        # The largest body this relay sends: the setting, lowered to the broker's limit once the
        # broker refused a larger message.
        self.max_message_bytes = max_message_bytes or settings.RELAY_MAX_MESSAGE_BYTES

    def producer(self):
        if self._producer is None:
            conn = self.app.connection_for_write()
            try:
                conn.ensure_connection(max_retries=1)
                exchange_ensure(conn, PRODUCTS_EXCHANGE)  # its owner declares it
                channel = conn.default_channel
                # confirm mode now (py-amqp's own flag, as its basic_publish_confirm sets it), so
                # every message on this channel, either way it is sent, is counted by its tag
                channel._confirm_selected = True
                channel.confirm_select()
                self._confirms = _Confirms(channel)
                self._producer = conn.Producer(channel=channel)
            except Exception:
                conn.release()
                raise
            self._conn = conn
        return self._producer

    def publish(self, message: TaskMessage) -> None:
        """Send one message and wait for the broker's confirm (raises if it does not come)."""
        producer = self.producer()
        self._confirms.sent += 1
        producer.publish(
            message.body, exchange=PRODUCTS_EXCHANGE, routing_key=message.routing_key,
            headers=message.headers, **message.properties,
            mandatory=True,      # unroutable -> error, not a silent drop
            retry=False,         # no blind retries: a failed publish is "unknown"
            confirm_timeout=settings.RELAY_CONFIRM_TIMEOUT,
            timeout=settings.RELAY_CONFIRM_TIMEOUT,
            declare=[],
        )

    def publish_many(self, messages: list[TaskMessage]) -> None:
        """Send ``messages`` one after the other, then wait for the broker's confirms of all of
        them: one round trip for the lot rather than one per message (a quorum queue confirms
        after its log write). Raises ``PublishFailed`` if the broker cannot be reached, refuses
        or returns any of them, or does not confirm them all within ``RELAY_CONFIRM_TIMEOUT``,
        saying how many of them (the first ones) it confirmed before; the others may have
        arrived or not (duplicates if sent again, never loss)."""
        first = None
        try:
            channel = self.producer().channel
            confirms = self._confirms
            first = confirms.sent
            for m in messages:
                raw = channel.prepare_message(m.body, 0, m.properties["content_type"],
                                              m.properties["content_encoding"], m.headers,
                                              {k: v for k, v in m.properties.items()
                                               if k not in ("content_type", "content_encoding")})
                channel._basic_publish(raw, exchange=PRODUCTS_EXCHANGE.name,
                                       routing_key=m.routing_key, mandatory=True)
                confirms.sent += 1
            confirms.wait(self._conn, timeout=settings.RELAY_CONFIRM_TIMEOUT)
        except Exception as exc:
            confirmed = 0 if first is None else max(0, min(len(messages),
                                                           confirms.confirmed - first))
            raise PublishFailed(exc, confirmed) from exc

    def reset(self) -> None:
        """After a failure: drop the connection without AMQP's closing handshake (a broker that
        stopped answering would hold each step of it for the whole I/O timeout)."""
        self._drop(graceful=False)

    def close(self) -> None:
        self._drop(graceful=True)

    def _drop(self, *, graceful: bool) -> None:
        self._confirms = None
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release() if graceful else conn.collect()
            except Exception:  # noqa: BLE001 - it is already broken
                pass


class Cycle(NamedTuple):
    """What one claim-publish-commit cycle did: events confirmed, events set aside, and whether
    more rows were pending than the claim took."""

    published: int
    set_aside: int
    more: bool


def outbox_publish_pending(*, publisher: Publisher | None = None, app=celery_app,
                           claim_size: int | None = None,
                           max_events_per_message: int | None = None) -> int:
    """Claim pending rows (up to ``claim_size``), publish them, keep the confirmed ones sent.

    Returns the number of events published. Raises if a publish failed (after returning the
    unconfirmed rows to pending); the publisher is then reset."""
    return outbox_publish_cycle(publisher=publisher, app=app, claim_size=claim_size,
                                max_events_per_message=max_events_per_message).published


def outbox_publish_cycle(*, publisher: Publisher | None = None, app=celery_app,
                         claim_size: int | None = None,
                         max_events_per_message: int | None = None) -> Cycle:
    """One cycle (``outbox_publish_pending``), saying also what was set aside and if more wait."""
    if publisher is None:
        publisher = Publisher(app)
        try:
            return outbox_publish_cycle(publisher=publisher, claim_size=claim_size,
                                        max_events_per_message=max_events_per_message)
        finally:
            publisher.close()
    claim_size = claim_size or settings.RELAY_CLAIM_SIZE
    per_message = max_events_per_message or settings.RELAY_MAX_EVENTS_PER_MESSAGE
    error: BaseException | None = None
    sent: list[tuple[list[ClaimedEvent], TaskMessage]] = []
    aside: list[tuple[ClaimedEvent, str]] = []
    with transaction.atomic(), connection.cursor() as cursor:
        rows, more = outbox_claim(cursor=cursor, limit=claim_size,
                                  max_bytes=settings.RELAY_CLAIM_MAX_BYTES)
        if not rows:
            return Cycle(0, 0, False)
        try:
            chunks, aside = _chunks(rows, per_message, publisher.max_message_bytes)
            for row, reason in aside:
                outbox_set_aside(cursor=cursor, row_id=row.id, reason=reason)
            for chunk in chunks:
                message = task_message_encode(events=[r.ref() for r in chunk],
                                              events_json=[r.payload for r in chunk],
                                              origin=ORIGIN)
                try:
                    publisher.publish(message)
                except PreconditionFailed as exc:
                    refused = _TOO_LARGE.search(str(exc))
                    if refused is None:
                        raise
                    publisher.reset()  # the broker closed the channel
                    broker_max = int(refused.group(2))
                    if len(chunk) == 1:
                        reason = f"refused by the broker: {exc}"
                        outbox_set_aside(cursor=cursor, row_id=chunk[0].id, reason=reason)
                        aside.append((chunk[0], reason))
                    else:
                        logger.warning("the broker refuses messages above %d bytes; the relay "
                                       "keeps below that from now on", broker_max)
                    publisher.max_message_bytes = min(publisher.max_message_bytes, broker_max)
                    more = True  # what was not sent goes back to pending and is claimed again
                    break
                sent.append((chunk, message))
        except Exception as exc:  # noqa: BLE001 - any failure leaves the rest pending
            error = exc
            publisher.reset()
        done = {r.id for chunk, _ in sent for r in chunk} | {r.id for r, _ in aside}
        outbox_unclaim(cursor=cursor, ids=[r.id for r in rows if r.id not in done])
    events = sum(len(chunk) for chunk, _ in sent)
    EVENTS_PUBLISHED.inc(events)
    MESSAGES_PUBLISHED.inc(len(sent))
    for chunk, message in sent:  # committed: these are sent for good
        _log_published(chunk, message.summary)
    for row, reason in aside:
        SET_ASIDE.inc()
        logger.error("set aside outbox event %d (%s #%s v%s, %s): %s", row.id, row.type,
                     row.product_id, row.version, row.event_id, reason,
                     extra={"trace_id": row.trace_id or "-"})
    if error is not None:
        raise error
    return Cycle(events, len(aside), more)


class DirectOutcome(NamedTuple):
    """What ``events_publish_direct`` did: the events the broker confirmed, the ones to record
    in the outbox instead (the relay sends them, or sets them aside with the reason it gives any
    event), and the broker's failure, if that is why some were not sent."""

    published: list[EncodedEvent]
    unsent: list[EncodedEvent]
    error: BaseException | None


def events_publish_direct(*, events: list[EncodedEvent], publisher: Publisher, origin: str,
                          max_events_per_message: int | None = None) -> DirectOutcome:
    """Publish already encoded events straight to the products exchange, in messages as the
    relay builds them (one type each, at most ``RELAY_MAX_EVENTS_PER_MESSAGE`` events and the
    byte limit), all sent and then their confirms awaited together (``publish_many``). For
    producers whose events
    commit with nothing (``resync``: a snapshot of what the admin holds, sent again), so the
    outbox's atomicity buys them nothing. Never raises for the broker: what it could not send
    comes back in ``unsent``: an event no message may carry, an unknown type, and after a failed
    publish every event the broker had not confirmed (its outcome unknown: it may arrive twice,
    never be lost if the caller records ``unsent`` in the outbox)."""
    per_message = max_events_per_message or settings.RELAY_MAX_EVENTS_PER_MESSAGE
    trace_id = trace_id_get()
    rows = [ClaimedEvent(i, e.type, e.product_id, e.version, e.event_id, e.payload, trace_id)
            for i, e in enumerate(events)]
    chunks, aside = _chunks(rows, per_message, publisher.max_message_bytes)
    error: BaseException | None = None
    messages = [task_message_encode(events=[r.ref() for r in chunk],
                                    events_json=[r.payload for r in chunk], origin=origin)
                for chunk in chunks]
    try:
        if messages:
            publisher.publish_many(messages)
    except PublishFailed as failed:
        publisher.reset()
        chunks = chunks[:failed.confirmed]  # confirmed before the failure: sent
        refused = (_TOO_LARGE.search(str(failed.cause))
                   if isinstance(failed.cause, PreconditionFailed) else None)
        if refused is None:
            error = failed.cause
        else:  # the rest goes through the outbox; the relay learns the limit and obeys it too
            broker_max = int(refused.group(2))
            logger.warning("the broker refuses messages above %d bytes (%s); resync keeps "
                           "below that from now on, and this batch's unconfirmed events go "
                           "through the outbox", broker_max, failed.cause)
            publisher.max_message_bytes = min(publisher.max_message_bytes, broker_max)
    done = {r.id for chunk in chunks for r in chunk}
    return DirectOutcome([e for i, e in enumerate(events) if i in done],
                         [e for i, e in enumerate(events) if i not in done], error)


def _chunks(rows: list[ClaimedEvent], per_message: int, max_bytes: int
            ) -> tuple[list[list[ClaimedEvent]], list[tuple[ClaimedEvent, str]]]:
    """Group rows into messages: one event type per message, in id order, at most
    ``per_message`` events and ``max_bytes`` of body each. Rows that cannot go in any message
    come back with the reason."""
    aside: list[tuple[ClaimedEvent, str]] = []
    sendable: list[tuple[ClaimedEvent, int]] = []
    for row in rows:
        size = len(row.payload) if row.payload.isascii() else len(row.payload.encode())
        alone = task_message_body_size([size])
        if row.type not in contract.EVENT_TYPES:
            aside.append((row, f"unknown event type {row.type!r}: no routing key for it"))
        elif alone > max_bytes:
            aside.append((row, f"too large: alone it makes a message body of {alone} bytes, "
                               f"above the limit of {max_bytes} bytes (ADMIN_RELAY_MAX_MESSAGE_"
                               "BYTES, or the broker's max_message_size)"))
        else:
            sendable.append((row, size))
    sendable.sort(key=lambda item: (item[0].type, item[0].id))
    chunks: list[list[ClaimedEvent]] = []
    for _event_type, group in groupby(sendable, key=lambda item: item[0].type):
        chunk: list[ClaimedEvent] = []
        body = 0  # bytes of the chunk's message body so far
        for row, size in group:
            grown = body + len(", ") + size
            if chunk and (len(chunk) >= per_message or grown > max_bytes):
                chunks.append(chunk)
                chunk = []
            body = grown if chunk else task_message_body_size([size])
            chunk.append(row)
        if chunk:
            chunks.append(chunk)
    return chunks, aside


def _log_published(rows: list[ClaimedEvent], summary: str) -> None:
    """One line per message, carrying the trace id(s) of its events (docs/operations.md)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    trace_ids = sorted({r.trace_id for r in rows if r.trace_id})
    logger.info("published %s", summary, extra={
        "trace_id": trace_ids[0] if len(trace_ids) == 1 else "-",
        "trace_ids": trace_ids[:100], "events": len(rows)})
