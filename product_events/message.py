"""The one encoder of the AMQP message that carries product events (docs/events.md): a Celery
protocol-2 task message, JSON, for ``catalog.apply_product_events(events=[...])``.

Built here rather than by Celery's ``send_task`` so that a producer can splice the events' JSON
as stored (the relay reads ``payload::text`` from the outbox and never parses it) and needs no
Celery app. ``tests/e2e/test_contract.py`` compares this output with what Celery itself builds
for the same call (``app.amqp.as_task_v2``), so a Celery upgrade that changes the format fails a
test instead of drifting unseen."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from product_events import contract

# Celery's "embed" part of the body: no callbacks, errbacks, chain or chord.
_EMBED = '{"callbacks": null, "errbacks": null, "chain": null, "chord": null}'
DEFAULT_ORIGIN = f"producer@{socket.gethostname()}"
_BODY_START = '[[], {"events": ['
_BODY_END = "]}, " + _EMBED + "]"
_SEPARATOR = ", "


def task_message_body_size(event_sizes: Sequence[int]) -> int:
    """The body's length in bytes for events whose JSON texts are ``event_sizes`` bytes long
    (what a broker's ``max_message_size`` is compared with)."""
    return (len(_BODY_START) + len(_BODY_END) + sum(event_sizes)
            + len(_SEPARATOR) * max(0, len(event_sizes) - 1))


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """What to hand to an AMQP publish: ``body``, ``headers``, ``routing_key`` and the message
    ``properties`` (kombu ``Producer.publish`` keywords). ``task_id`` is also the
    correlation id; ``summary`` is Celery's ``kwargsrepr`` (what Flower shows)."""

    body: bytes
    headers: dict[str, Any]
    properties: dict[str, Any]
    routing_key: str
    task_id: str
    summary: str


def task_message_encode(*, events: Sequence[Mapping[str, Any]],
                        events_json: Sequence[str] | None = None,
                        origin: str = DEFAULT_ORIGIN) -> TaskMessage:
    """The task message carrying ``events`` (envelopes, or any mappings with at least their
    ``type``, ``product_id``, ``version`` and ``event_id``). ``events_json``, when given, is the
    envelopes' JSON text, spliced into the body as it is (one string per event, same order);
    otherwise ``events`` are the envelopes and are encoded here.

    All events must share one type: it is the routing key. Every message gets a new task id (a
    UUID 4), also a message of one event: an event id names a change, which may be sent more
    than once (resync, repair, a relay crash), while a task id names one message."""
    if not events:
        raise ValueError("a task message carries at least one event")
    types = {ev.get("type") for ev in events}
    if len(types) != 1:
        raise ValueError(f"one event type per message, got {sorted(map(str, types))}")
    routing_key = contract.routing_key_for(types.pop())
    if events_json is None:
        events_json = [json.dumps(ev, separators=(",", ":")) for ev in events]
    elif len(events_json) != len(events):
        raise ValueError("events_json must hold one JSON text per event")
    task_id = str(uuid.uuid4())
    summary = contract.task_summary(list(events))
    body = _BODY_START + _SEPARATOR.join(events_json) + _BODY_END
    headers = {
        "lang": "py", "task": contract.TASK_APPLY_PRODUCT_EVENTS, "id": task_id,
        "shadow": None, "eta": None, "expires": None, "group": None, "group_index": None,
        "retries": 0, "timelimit": [None, None], "root_id": task_id, "parent_id": None,
        "argsrepr": "[]", "kwargsrepr": summary, "origin": origin, "ignore_result": True,
        "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }
    properties = {"content_type": contract.CONTENT_TYPE, "content_encoding": "utf-8",
                  "delivery_mode": 2, "correlation_id": task_id, "reply_to": ""}
    return TaskMessage(body=body.encode(), headers=headers, properties=properties,
                       routing_key=routing_key, task_id=task_id, summary=summary)
