"""Is this AMQP message a task message the worker can run? Checked in the worker's main process
before Celery builds a request from it (workers/consumer.py).

Celery turns only some malformed messages into errors it handles (unknown task, refused content
type, undecodable body); others raise in its consumer loop and stop the worker (a body that is
``{}`` or ``[1]``, a ``timelimit`` of ``"x"``, a ``task`` header that is a list, no ``id``), or
are acked in the pool without running (``kwargs`` that is not a mapping). This module states what
a protocol-2 JSON task message of ours must look like, so that everything else is parked with
its reason instead. It reads only the message (no I/O) and never raises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from numbers import Real

import msgspec
from kombu.utils import json as kombu_json

from product_events import contract

# header -> the types it may hold (None allowed for all but task and id)
_OPTIONAL_STR = ("lang", "shadow", "root_id", "parent_id", "group", "argsrepr", "kwargsrepr",
                 "origin", "eta", "expires")
_OPTIONAL_INT = ("retries", "group_index", "replaced_task_nesting")
_EMBED_KEYS = ("callbacks", "errbacks", "chain", "chord")
MAX_REASON_VALUE = 80
# the one task a subscriber runs (Celery's built-in tasks, celery.map, celery.chunks, ... are
# registered in every app: a message naming one must not run it)
TASKS = frozenset({contract.TASK_APPLY_PRODUCT_EVENTS})
# an eta further ahead than this would hold a prefetch slot unacked until then: parked instead
# (the subscriber's own retries come back through its delayed-delivery queues when due)
MAX_ETA_AHEAD = timedelta(seconds=60)


def task_message_problem(message) -> str | None:
    """None if ``message`` can become a task of ours, else why not (for ``x-park-reason``)."""
    try:
        return _headers_problem(message.headers) or _body_problem(message)
    except Exception as exc:  # noqa: BLE001 - a check must never be what crashes the worker
        return f"malformed message ({type(exc).__name__}: {exc})"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= MAX_REASON_VALUE else text[:MAX_REASON_VALUE] + "..."


def _headers_problem(headers) -> str | None:
    if not isinstance(headers, dict):
        return f"headers are not a table: {_short(headers)}"
    if "task" not in headers:
        return None  # not a protocol-2 task message: Celery's own path parks it (no task header)
    for name in ("task", "id"):
        value = headers.get(name)
        if not isinstance(value, str) or not value:
            return f"header {name!r} must be a non-empty string, got {_short(value)}"
    if headers["task"] not in TASKS:
        return (f"unknown task {_short(headers['task'])}: a subscriber runs only "
                f"{', '.join(sorted(TASKS))}")
    for name in _OPTIONAL_STR:
        value = headers.get(name)
        if value is not None and not isinstance(value, str):
            return f"header {name!r} must be a string or null, got {_short(value)}"
    for name in _OPTIONAL_INT:
        value = headers.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return f"header {name!r} must be an integer or null, got {_short(value)}"
    if isinstance(headers.get("retries"), int) and headers["retries"] < 0:
        return f"header 'retries' must not be negative, got {headers['retries']}"
    for name in ("eta", "expires"):
        if headers.get(name) is not None:
            try:
                at = datetime.fromisoformat(headers[name])
                at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
            except ValueError:
                return f"header {name!r} is not an ISO 8601 time: {_short(headers[name])}"
            except OverflowError:
                return f"header {name!r} is outside the times a worker can hold: " \
                       f"{_short(headers[name])}"
            if name == "expires":
                # Celery would discard the message unapplied once it expired ("revoked"):
                # an event must never expire
                return f"header 'expires' must be null (an event never expires), got " \
                       f"{_short(headers[name])}"
            if at > datetime.now(UTC) + MAX_ETA_AHEAD:
                return (f"header 'eta' is more than {MAX_ETA_AHEAD.seconds} s ahead "
                        f"({_short(headers[name])}): events are applied when they arrive")
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (
            isinstance(timelimit, (list, tuple)) and len(timelimit) == 2
            and all(t is None or (isinstance(t, Real) and not isinstance(t, bool) and t >= 0)
                    for t in timelimit)):
        return f"header 'timelimit' must be [soft, hard] seconds or nulls, got {_short(timelimit)}"
    for name, kind in (("stamped_headers", list), ("stamps", dict)):
        value = headers.get(name)
        if value is not None and not isinstance(value, kind):
            return f"header {name!r} must be a {kind.__name__} or null, got {_short(value)}"
    if headers.get("ignore_result") is not None and not isinstance(headers["ignore_result"],
                                                                   bool):
        return f"header 'ignore_result' must be a boolean, got {_short(headers['ignore_result'])}"
    return None


def body_decode(raw):
    """A JSON body as kombu decodes it, ~3x faster: msgspec, and for what msgspec refuses but
    Python's json reads (NaN, infinities, lone surrogates, ...) kombu's own decoder,
    so that a message of events is never refused whole for what only one event holds. kombu
    also turns ``{"__type__": ..., "__value__": ...}`` objects into other types: a body that may
    hold one is decoded by kombu too, so the result is always what kombu would give."""
    if isinstance(raw, (memoryview, bytearray)):
        raw = bytes(raw)
    marker, escape = ("__type__", "\\u") if isinstance(raw, str) else (b"__type__", b"\\u")
    try:
        body = _decode(raw)  # bytes, or the text py-amqp decoded (content_encoding utf-8)
    except (msgspec.DecodeError, RecursionError, UnicodeEncodeError):
        pass
    else:
        # "__type__" can only be a key of the decoded body if its text is in the raw one, or
        # it is written with \u escapes
        if (marker not in raw and escape not in raw) or not _any_marker(body):
            return body
    return kombu_json.loads(raw)


_decode = msgspec.json.Decoder().decode


def _any_marker(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            if "__type__" in item:
                return True
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return False


def _body_problem(message) -> str | None:
    if message.content_type != contract.CONTENT_TYPE:
        return None  # Celery refuses it (accept_content) and the consumer parks it
    raw = message.body
    try:
        body = body_decode(raw)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        return f"undecodable body ({message.content_type}): {type(exc).__name__}: {exc}"
    if (message.content_encoding or "utf-8").lower() in ("utf-8", "utf8"):
        # what kombu's own decode would return: Celery reads ``message.payload`` next, and
        # decoding 100 events again cost ~10% of the worker's main process
        message._decoded_cache = body
    if not isinstance(body, list) or len(body) != 3:
        return f"body must be [args, kwargs, embed], got {_short(body)}"
    args, kwargs, embed = body
    if not isinstance(args, list):
        return f"task args must be a list, got {_short(args)}"
    if not isinstance(kwargs, dict):
        return f"task kwargs must be an object, got {_short(kwargs)}"
    if embed is not None and not isinstance(embed, dict):
        return f"body embed must be an object or null, got {_short(embed)}"
    for key in _EMBED_KEYS:
        value = (embed or {}).get(key)
        if value:  # callbacks, errbacks, a chain or a chord would run more tasks, and publish
            return f"body embed {key!r} must be null or empty (no workflows), got {_short(value)}"
    if (message.headers or {}).get("task") == contract.TASK_APPLY_PRODUCT_EVENTS:
        # our task's arguments (docs/events.md): parked here whole, with the reason, rather
        # than rejected by the task without one
        if args or set(kwargs) != {"events"}:
            return ("task arguments must be args [] and kwargs {'events': [...]}, got "
                    f"{len(args)} args and kwargs {_short(sorted(kwargs))}")
        if not isinstance(kwargs["events"], list) or not kwargs["events"]:
            return f"kwargs 'events' must be a non-empty list, got {_short(kwargs['events'])}"
    return None
