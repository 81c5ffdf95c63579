"""Operate the dead-letter queue: list (with reasons), replay, purge.

A message is selected by its Celery task id (header ``id``) or by the event id of any event it
carries. Listing never removes anything: messages are read without ack and the channel is closed,
which returns them to the queue.

Parking is at least once: a worker that loses its broker connection between publishing the
parked copy and acking the original gets the original again and parks it again. ``read`` groups
such copies into one ``Parked`` entry (``copy_key``: the task it was parked from, the reason, the
content type and encoding, the body's bytes); ``replay`` republishes one copy of each entry and
then removes all of its copies.

Every broker wait is bounded (``CATALOG_BROKER_CONNECT_TIMEOUT``, ``CATALOG_BROKER_IO_TIMEOUT``,
``CATALOG_BROKER_CONFIRM_TIMEOUT``): during a broker alarm a replay's publish fails within them
(``ReplayFailed``), the message it was for stays in the DLQ (its copy may still arrive: a replay
is harmless twice), and so does every message not replayed yet."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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
    """One distinct parked message: the first copy read (``message``) and the other copies of it
    (``copies``, by ``copy_key``); ``index`` numbers the distinct entries from 1."""

    index: int
    task_id: str
    reason: str
    events: list[str]          # event ids carried (if the body could be read)
    summary: str
    message: object            # kombu message (unacked)
    copies: list = field(default_factory=list)  # the other copies' kombu messages (unacked)

    @property
    def count(self) -> int:
        """How many copies of it were read (1: no duplicate)."""
        return 1 + len(self.copies)

    @property
    def messages(self) -> list:
        return [self.message, *self.copies]

    @property
    def task_ids(self) -> list[str]:
        """The task id of each copy, once each (copies of an event the worker parked twice have
        task ids of their own: ``copy_key``)."""
        ids = [self.task_id, *(_task_id(m.headers or {}) for m in self.copies)]
        return list(dict.fromkeys(ids))

    def matches(self, wanted: set[str]) -> bool:
        return bool(wanted.intersection(self.task_ids)) or bool(wanted.intersection(self.events))


def _task_id(headers: dict) -> str:
    return str(headers.get("id", ""))


def _reason(headers: dict) -> str:
    if headers.get("x-park-reason"):
        return headers["x-park-reason"]
    deaths = headers.get("x-death") or []
    if deaths:
        d = deaths[0]
        return f"dead-lettered by RabbitMQ: {d.get('reason')} (from {d.get('queue')}, " \
               f"{d.get('count')}x)"
    return "unknown"


def copy_key(raw) -> tuple:
    """What two copies of one parked message share, from the AMQP message as read (before kombu
    decompresses its body): the task it was parked from, its reason (as ``_reason`` words it),
    its content type, encoding and ``compression`` header, and its body's bytes.

    The task: a worker parks an invalid event as a new task message (``x-parked-from-task``
    names the task it came from, and Celery gives each park a task id of its own), so two parks
    of one redelivered message differ in ``id`` and agree in ``x-parked-from-task``; a message
    parked whole (``park_message``) or dead-lettered by RabbitMQ keeps its own ``id``. Headers
    are compared by ``repr``: an empty or missing task id groups only with the same, and
    whatever a producer put there stays hashable."""
    props = raw.properties or {}
    headers = props.get("application_headers") or {}
    origin = headers.get("x-parked-from-task")
    task = ("parked from", repr(origin)) if origin else ("id", repr(headers.get("id")))
    body = raw.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    return (task, repr(_reason(headers)), repr(props.get("content_type")),
            repr(props.get("content_encoding")), repr(headers.get("compression")), bytes(body))


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
    return Parked(index=index, task_id=_task_id(headers), reason=_reason(headers),
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
        """The distinct parked messages among the first ``limit`` messages of the queue (every
        one if None), in queue order of their first copy, each with its other copies
        (``copy_key``). ``limit`` bounds the messages read, copies included."""
        entries: dict[tuple, Parked] = {}
        read = 0
        while limit is None or read < limit:
            raw = self.channel.basic_get(self.queue, no_ack=False)
            if raw is None:
                break
            read += 1
            key = copy_key(raw)  # before message_readable, which may move a header
            message = message_readable(self.channel, raw)
            if key in entries:
                entries[key].copies.append(message)
            else:
                entries[key] = _describe(len(entries) + 1, message)
        return list(entries.values())

    def ready(self) -> int:
        """Messages ready in the DLQ now, i.e. not counting those this channel holds unacked."""
        _, count, _ = self.channel.queue_declare(queue=self.queue, passive=True)
        return count

    def replay(self, parked: list[Parked]) -> int:
        """Republish one copy of each entry to the subscriber's queue (through its private
        exchange: no other subscriber sees it again), confirmed, then remove every copy of it
        from the DLQ. How many entries were replayed (their duplicate copies: ``Parked.copies``).
        If a publish fails, nothing of that entry (no copy) nor of any later one is removed."""
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
            for copy in p.messages:
                copy.ack()
            done += 1
        return len(parked)

    def purge(self) -> int:
        return self.channel.queue_purge(self.queue) or 0
