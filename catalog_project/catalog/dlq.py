"""Operate the dead-letter queue: list (with reasons), replay, purge.

A message is selected by its Celery task id (header ``id``) or by the event id of any event it
carries. Listing never removes anything: messages are read without ack and the channel is closed,
which returns them to the queue.

Every broker wait is bounded (``CATALOG_BROKER_CONNECT_TIMEOUT``, ``CATALOG_BROKER_IO_TIMEOUT``,
``CATALOG_BROKER_CONFIRM_TIMEOUT``): during a broker alarm a replay's publish fails within them
(``ReplayFailed``), the message it was for stays in the DLQ (its copy may still arrive: a replay
is harmless twice), and so does every message not replayed yet."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings
from kombu import Connection

from catalog_project import topology
from product_events import contract

REPLAY_DROP_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                       "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                       "x-last-death-reason", "x-park-reason", "x-parked-by",
                       "x-parked-from-task", "x-delivery-count")


@dataclass
class Parked:
    index: int
    task_id: str
    reason: str
    events: list[str]          # event ids carried (if the body could be read)
    summary: str
    message: object            # kombu message (unacked)

    def matches(self, wanted: set[str]) -> bool:
        return self.task_id in wanted or bool(wanted.intersection(self.events))


def _reason(headers: dict) -> str:
    if headers.get("x-park-reason"):
        return headers["x-park-reason"]
    deaths = headers.get("x-death") or []
    if deaths:
        d = deaths[0]
        return f"dead-lettered by RabbitMQ: {d.get('reason')} (from {d.get('queue')}, " \
               f"{d.get('count')}x)"
    return "unknown"


def message_readable(channel, raw):
    """The kombu message of an AMQP message, even one whose ``compression`` header names no
    codec or does not fit the body (kombu raises on those while building the message): the
    header is then kept as ``x-unusable-compression`` and the body left as it is."""
    try:
        return channel.message_to_python(raw)
    except Exception:  # noqa: BLE001 - only the compression header makes kombu raise here
        headers = raw.properties.setdefault("application_headers", {}) or {}
        headers["x-unusable-compression"] = repr(headers.pop("compression", None))[:200]
        raw.properties["application_headers"] = headers
        return channel.message_to_python(raw)


def _describe(index: int, message) -> Parked:
    headers = message.headers or {}
    events, summary = [], headers.get("kwargsrepr") or ""
    try:
        body = json.loads(message.body)
        raw_events = body[1]["events"]
        events = [e.get("event_id") for e in raw_events if isinstance(e, dict)]
        summary = summary or contract.task_summary(raw_events)
    except Exception:  # noqa: BLE001 - poison can be anything
        summary = summary or f"<{message.content_type}, {len(message.body or b'')} bytes>"
    return Parked(index=index, task_id=str(headers.get("id", "")), reason=_reason(headers),
                  events=[e for e in events if e], summary=str(summary)[:200], message=message)


class ReplayFailed(Exception):
    """A replay's publish got no confirm within its bounds; nothing was removed for it."""


class DeadLetters:
    """The dead-letter queue of one subscriber (default: the catalog's)."""

    def __init__(self, broker_url: str, subscriber: topology.Subscription = topology.CATALOG):
        io = settings.CATALOG_BROKER_IO_TIMEOUT
        self.conn = Connection(broker_url, connect_timeout=settings.CATALOG_BROKER_CONNECT_TIMEOUT,
                               transport_options={"confirm_publish": True, "read_timeout": io,
                                                  "write_timeout": io})
        self.subscriber = subscriber
        self.queue = subscriber.dlq_name
        self.channel = None
        self.broken = False

    def __enter__(self):
        self.conn.ensure_connection(max_retries=2)
        self.channel = self.conn.channel()
        self.channel.basic_qos(0, 0, False)
        return self

    def __exit__(self, *exc):
        if self.broken:
            # no goodbye to a broker that does not read (an alarm): drop the socket; the
            # broker returns every unacked message to the DLQ when it sees it close
            self.conn.collect()
            return
        try:
            self.channel.close()  # unacked messages go back to the queue
        finally:
            self.conn.release()

    def read(self, limit: int | None = None) -> list[Parked]:
        out = []
        while limit is None or len(out) < limit:
            raw = self.channel.basic_get(self.queue, no_ack=False)
            if raw is None:
                break
            out.append(_describe(len(out) + 1, message_readable(self.channel, raw)))
        return out

    def replay(self, parked: list[Parked]) -> int:
        """Republish to the subscriber's queue (through its private exchange: no other
        subscriber sees it again), confirmed, then remove from the DLQ."""
        producer = self.conn.Producer()
        done = 0
        for p in parked:
            m = p.message
            headers = {k: v for k, v in (m.headers or {}).items()
                       if k not in REPLAY_DROP_HEADERS}
            try:
                producer.publish(m.body, exchange=self.subscriber.exchange.name,
                                 routing_key=self.subscriber.queue.routing_key, headers=headers,
                                 content_type=m.content_type,
                                 content_encoding=m.content_encoding, delivery_mode=2,
                                 mandatory=True, retry=False,
                                 confirm_timeout=settings.CATALOG_BROKER_CONFIRM_TIMEOUT,
                                 timeout=settings.CATALOG_BROKER_CONFIRM_TIMEOUT)
            except (OSError, *self.conn.connection_errors, *self.conn.channel_errors) as exc:
                self.broken = True
                raise ReplayFailed(
                    f"replay of task {p.task_id or '?'} got no confirm from the broker "
                    f"({type(exc).__name__}: {exc or 'timed out'}); {done} replayed, "
                    f"{len(parked) - done} left in {self.queue} (a broker alarm? "
                    "rabbitmq-diagnostics alarms)") from exc
            m.ack()
            done += 1
        return len(parked)

    def purge(self) -> int:
        return self.channel.queue_purge(self.queue) or 0
