"""A publisher-confirmed producer for the worker's few publishes that must not be lost: retries
and parked messages. Only these wait for the broker's confirm; Celery's task events (one per
task state, for Flower) and remote-control replies do not, which keeps the consumer loop from
stalling on a round trip per event.

A fresh connection per use: these publishes are rare (errors only), and a connection kept idle
for hours could be dead without anyone noticing, turning a retry into a dead-lettered message.

Every wait is bounded (docs/operations.md, "During a broker alarm"): connecting
(``CATALOG_BROKER_CONNECT_TIMEOUT``), each socket read and write (``CATALOG_BROKER_IO_TIMEOUT``:
a broker blocked by a memory or disk alarm stops reading, so without it a publish, and the
channel close after it, waits for as long as the alarm lasts) and the confirm
(``CATALOG_BROKER_CONFIRM_TIMEOUT``). A publish that hits a bound raises one of
``PUBLISH_UNKNOWN``: it may still be delivered later, so the caller keeps the original message
(unacked, requeued after ``publish_failed_pause``) and never acks it."""

from __future__ import annotations

import contextlib

from amqp.exceptions import ConnectionError as AMQPConnectionError
from amqp.exceptions import MessageNacked
from django.conf import settings
from kombu.exceptions import OperationalError

# What a publish that did not get its confirm raises: socket timeouts and errors (OSError),
# a connection the broker closed, a nack, kombu's "cannot connect".
PUBLISH_UNKNOWN = (OSError, AMQPConnectionError, MessageNacked, OperationalError)


def publish_options() -> dict:
    """Keyword arguments for ``producer.publish`` / ``send_task``: the confirm's bound."""
    return {"confirm_timeout": settings.CATALOG_BROKER_CONFIRM_TIMEOUT,
            "timeout": settings.CATALOG_BROKER_CONFIRM_TIMEOUT}


def publish_failed_pause(delivery_count) -> float:
    """Seconds to hold a message whose park or retry publish failed before it goes back to its
    queue: ``CATALOG_PUBLISH_FAILED_PAUSE`` doubled per earlier delivery, up to
    ``CATALOG_PUBLISH_FAILED_PAUSE_MAX``. Every requeue counts towards the quorum queue's
    delivery limit (10): the pauses add up to about 20 minutes of alarm before the broker
    dead-letters the message (to the DLQ, still not lost)."""
    try:
        n = max(0, int(delivery_count or 0))
    except (TypeError, ValueError):
        n = 0
    return min(settings.CATALOG_PUBLISH_FAILED_PAUSE_MAX,
               settings.CATALOG_PUBLISH_FAILED_PAUSE * 2 ** min(n, 20))


@contextlib.contextmanager
def confirming_producer(app):
    io = settings.CATALOG_BROKER_IO_TIMEOUT
    options = {"confirm_publish": True, "read_timeout": io, "write_timeout": io,
               "connect_timeout": settings.CATALOG_BROKER_CONNECT_TIMEOUT}
    with app.connection_for_write(transport_options=options) as conn:
        conn.ensure_connection(max_retries=2)
        yield conn.Producer(channel=conn.default_channel)
