"""Direct AMQP helpers for tests: declare spy queues, count and fetch messages exactly."""

from __future__ import annotations

import os

from kombu import Connection, Exchange, Queue

# Publisher confirms on every test connection: without them RabbitMQ may drop the last messages
# of a quick burst into a quorum queue when the connection closes right after it (seen in the
# bench's drain: 27 of 500 messages), and a test would wait for events never enqueued.
_OPTIONS = {"confirm_publish": True}


def broker_connection() -> Connection:
    return Connection(os.environ["CELERY_BROKER_URL"], connect_timeout=5,
                      transport_options=_OPTIONS)


def queue_depth(name: str, url: str | None = None) -> int:
    """Exact depth (passive declare), unlike `rabbitmqctl list_queues` for quorum queues."""
    with (broker_connection_to(url) if url else broker_connection()) as conn:
        _, count, _ = conn.default_channel.queue_declare(queue=name, passive=True)
        return count


def spy_queue(name: str, exchange: str, routing_key: str, exchange_type: str = "topic") -> Queue:
    """A plain durable queue bound to ``exchange`` that records what gets published there."""
    q = Queue(name, Exchange(exchange, exchange_type, durable=True), routing_key=routing_key,
              durable=True)
    with broker_connection() as conn:
        q(conn.default_channel).declare()
    return q


def drain(name: str, limit: int = 10_000, url: str | None = None) -> list:
    """Fetch (and ack) every message currently in queue ``name``."""
    out = []
    with (broker_connection_to(url) if url else broker_connection()) as conn:
        channel = conn.default_channel
        while len(out) < limit:
            raw = channel.basic_get(name, no_ack=False)
            if raw is None:
                break
            try:
                msg = channel.message_to_python(raw)
            except Exception:  # noqa: BLE001 - a compression header kombu cannot apply
                headers = raw.properties.get("application_headers") or {}
                headers["x-unusable-compression"] = repr(headers.pop("compression", None))
                raw.properties["application_headers"] = headers
                msg = channel.message_to_python(raw)
            msg.accept = None  # tests read any content type (pickle included) as it is
            out.append(msg)
            msg.ack()
    return out


def queue_delete(name: str) -> None:
    with broker_connection() as conn:
        conn.default_channel.queue_delete(queue=name)


def broker_connection_to(url: str) -> Connection:
    return Connection(url, connect_timeout=5, transport_options=_OPTIONS)
