"""Park events that cannot succeed in the dead-letter queue, with their reason.

A parked event is a normal task message (same task name, ``kwargs={"events": [event]}``) sent to
the subscriber's DLQ (``catalog.products.dlq``, ``audit.products.dlq``) with headers
``x-park-reason``, ``x-parked-from-task`` and ``x-parked-by``. Replaying it is republishing it
to the subscriber's queue as it is. Publishing uses publisher confirms; only then is the original
message acked. Every wait is bounded (workers/confirming.py): a publish that gets no confirm
raises, and the caller keeps the original (requeued after a pause, never acked)."""

from __future__ import annotations

import logging
import socket

from product_events import contract
from workers.confirming import confirming_producer, publish_options

logger = logging.getLogger("workers.parking")

MAX_REASON = 1000


def park_events(*, app, request, items: list[tuple[object, str]]) -> None:
    subscription = app.subscriber.subscription
    with confirming_producer(app) as producer:
        for raw, reason in items:
            logger.error("parking event in %s: %s (task %s)", subscription.dlq_name, reason,
                         request.id)
            events = [raw]
            app.send_task(
                contract.TASK_APPLY_PRODUCT_EVENTS,
                args=[],
                kwargs=contract.task_kwargs(events),
                exchange=subscription.dead_letter_exchange,
                routing_key=subscription.dlq_name,
                producer=producer,
                declare=[],
                mandatory=True,
                retry=False,
                headers={
                    "x-park-reason": reason[:MAX_REASON],
                    "x-parked-from-task": request.id or "",
                    "x-parked-by": request.hostname or socket.gethostname(),
                },
                kwargsrepr=_safe_summary(events),
                argsrepr="[]",
                **publish_options(),
            )
    app.subscriber.metrics.dead_lettered(len(items), kind="event")


def park_message(*, app, message, reason: str) -> None:
    """Copy a raw message (body untouched, whatever its content type) into the DLQ with
    ``x-park-reason``; the caller acks the original only after this returned (confirmed)."""
    subscription = app.subscriber.subscription
    headers = dict(message.headers or {})
    headers.pop("x-death", None)
    if getattr(message, "errors", None) and "compression" in headers:
        # kombu could not even build this message (a compression header that names no codec or
        # does not fit the body): keep the header under another name so the DLQ stays readable
        headers["x-unusable-compression"] = repr(headers.pop("compression"))[:200]
    headers.update({"x-park-reason": reason[:MAX_REASON], "x-parked-by": socket.gethostname()})
    logger.error("parking message in %s: %s", subscription.dlq_name, reason)
    with confirming_producer(app) as producer:
        producer.publish(
            message.body, exchange=subscription.dead_letter_exchange,
            routing_key=subscription.dlq_name, headers=headers,
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or "binary",
            delivery_mode=2, mandatory=True, retry=False, declare=[], **publish_options(),
        )
    app.subscriber.metrics.dead_lettered(1, kind="message")


def _safe_summary(events) -> str:
    try:
        return contract.task_summary(events)
    except Exception:  # noqa: BLE001 - the event may be anything
        return repr(events)[:200]
