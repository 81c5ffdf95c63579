"""Product events on the wire: names, envelope, validation.

Wire format (see docs/events.md):

* Exchange ``products`` (topic, durable). Routing key = the event type of every event in the
  message, e.g. ``product.created``; a message never mixes event types.
* One AMQP message = one Celery task (protocol 2, JSON) named ``catalog.apply_product_events``
  with ``args == []`` and ``kwargs == {"events": [<envelope>, ...]}``: a batch of one or more
  events. Consumers must treat every event on its own (idempotent, ordered by ``version``).
* Envelope: ``event_id``, ``type``, ``product_id``, ``version``, ``occurred_at``, ``data``
  (the full product snapshot after the change; for a delete, the last state with the delete's
  version), and optionally ``trace_id`` (the request that made the change).
* ``event_id`` names the change, not one emission of it: ``event_id_for(type, product_id,
  version)`` (a UUID 5), so a resync or repair that sends the same change again sends the same id.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

# --- names that cross process boundaries (stable: changing one is a breaking change) ---
TASK_APPLY_PRODUCT_EVENTS = "catalog.apply_product_events"

EXCHANGE = "products"
EXCHANGE_TYPE = "topic"

PRODUCT_CREATED = "product.created"
PRODUCT_UPDATED = "product.updated"
PRODUCT_DELETED = "product.deleted"
EVENT_TYPES = (PRODUCT_CREATED, PRODUCT_UPDATED, PRODUCT_DELETED)
ROUTING_PATTERN_ALL = "product.#"

CONTENT_TYPE = "application/json"


class InvalidEvent(ValueError):
    """An event that can never be applied (permanent error): park it, do not retry it."""


class ProductEvent(NamedTuple):
    """A valid event (``envelope_validate``). A named tuple: built per event at thousands of
    events per second, it costs a quarter of a frozen dataclass."""

    event_id: str
    type: str
    product_id: int
    version: int
    occurred_at: str
    data: dict[str, Any]
    trace_id: str | None = None

    @property
    def is_delete(self) -> bool:
        return self.type == PRODUCT_DELETED

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "product_id": self.product_id,
            "version": self.version,
            "occurred_at": self.occurred_at,
            "data": self.data,
        } | ({"trace_id": self.trace_id} if self.trace_id else {})


def routing_key_for(event_type: str) -> str:
    if event_type not in EVENT_TYPES:
        raise InvalidEvent(f"unknown event type {event_type!r}")
    return event_type


# The namespace of event ids (UUID 5). Fixed forever: changing it renames every change.
EVENT_ID_NAMESPACE = uuid.UUID("a3b9f0d2-6a55-5d4c-9f1e-2f6c1b7e8d40")  # clients/node too


def event_id_for(event_type: str, product_id: int, version: int) -> str:
    """The id of the change (``event_type``, ``product_id``, ``version``): the same every time
    that change is sent (the first time, by resync, by ``reconcile --repair``), so subscribers
    that keep history (the audit log) record it once. A version names one state of a product
    (docs/events.md), so two different changes never share an id."""
    routing_key_for(event_type)
    return _uuid5(f"{event_type}:{int(product_id)}:{int(version)}")


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(EVENT_ID_NAMESPACE, name))`` without the UUID objects (RFC 4122: the
    SHA-1 of namespace and name, version 5 and the RFC variant in its bits): 1.4 against 4.0 us,
    once per event of a resync (tests/e2e/test_contract.py compares the two)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def envelope_build(
    *, event_type: str, product_id: int, version: int, occurred_at: datetime,
    data: dict[str, Any], event_id: str | None = None, trace_id: str | None = None,
) -> dict[str, Any]:
    """Build an envelope (a plain JSON-ready dict). ``occurred_at`` must be timezone-aware.
    ``event_id`` defaults to the change's id (``event_id_for``)."""
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    envelope = {
        "event_id": event_id or event_id_for(event_type, product_id, version),
        "type": routing_key_for(event_type),
        "product_id": product_id,
        "version": version,
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    if trace_id:
        envelope["trace_id"] = trace_id
    envelope_validate(envelope)
    return envelope


@cache
def event_schema() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("event.schema.json").read_text())


def _product_max_lengths() -> dict[str, int]:
    props = event_schema()["$defs"]["product"]["properties"]
    return {name: prop["maxLength"] for name, prop in props.items() if "maxLength" in prop}


# The longest text each product field may hold, in characters (the schema's ``maxLength``):
# the admin's model and serializer and the catalog's model take their limits from here.
PRODUCT_MAX_LENGTH: dict[str, int] = _product_max_lengths()


@cache
def schema_validator():
    """The schema compiled to Python code (fastjsonschema): ~18x faster than interpreting it,
    which matters at thousands of events per second. Compiled once per process."""
    import fastjsonschema

    # formats are checked below by parsing them (the explaining validator ignores them too)
    return fastjsonschema.compile(event_schema(), use_formats=False)


@cache
def _explaining_validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(event_schema())


def _schema_error(raw: Any) -> str:
    """The first schema violation, worded for an operator (jsonschema explains best)."""
    errors = sorted(_explaining_validator().iter_errors(raw), key=lambda e: list(e.absolute_path))
    if not errors:
        return "<envelope>: does not match the schema"
    err = errors[0]
    where = "/".join(str(p) for p in err.absolute_path) or "<envelope>"
    return f"{where}: {err.message}"


def envelope_validate(raw: Any) -> ProductEvent:
    """Return the event, or raise InvalidEvent saying exactly what is wrong."""
    event = _fast_event(raw)
    if event is not None:
        return event
    return _validated(raw)


def _validated(raw: Any) -> ProductEvent:
    """envelope_validate without its fast path: the schema decides and words the reason."""
    if not _plainly_valid(raw):  # the fast path said nothing: the schema decides
        from fastjsonschema import JsonSchemaException

        try:
            schema_validator()(raw)
        except JsonSchemaException:
            raise InvalidEvent(_schema_error(raw)) from None
        try:
            uuid.UUID(raw["event_id"])
        except ValueError as exc:
            raise InvalidEvent(f"event_id: bad value: {exc}") from None
    if raw["data"]["id"] != raw["product_id"]:
        raise InvalidEvent("data/id: does not match product_id")
    if raw["data"]["version"] != raw["version"]:
        raise InvalidEvent("data/version: does not match version")
    _storable_time("occurred_at", raw["occurred_at"])
    _storable_time("data/updated_at", raw["data"]["updated_at"])
    return ProductEvent(
        event_id=raw["event_id"], type=raw["type"], product_id=raw["product_id"],
        version=raw["version"], occurred_at=raw["occurred_at"], data=raw["data"],
        trace_id=raw.get("trace_id"),
    )


# The fast path of envelope_validate: an event of the usual shape, checked field by field in
# plain Python (~4x cheaper than the compiled schema, which was most of a worker's CPU per
# event). It only ever says "valid" for an event the schema accepts (every check is the
# schema's or stricter: exact types, whole-string matches, no NUL); anything else it leaves
# to the schema, which decides and words the reason. tests/e2e/test_contract.py checks the
# "only ever" against the schema on generated events.
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{12}")
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
                      r"(Z|[+-][0-9]{2}:[0-9]{2})")
_PRICE_RE = re.compile(r"[0-9]{1,10}\.[0-9]{2}")
_TRACE_RE = re.compile(r"[A-Za-z0-9._:-]{8,64}")
_ENVELOPE_REQUIRED = frozenset({"event_id", "type", "product_id", "version", "occurred_at",
                                "data"})
_ENVELOPE_KEYS = _ENVELOPE_REQUIRED | {"trace_id"}
_PRODUCT_REQUIRED = frozenset({"id", "title", "image", "price", "description", "version",
                               "updated_at"})
_PRODUCT_KNOWN = _PRODUCT_REQUIRED | {"created_at"}
_EXTRA_SCALARS = (str, int, bool, type(None))  # not float: NaN and infinities go to the schema
_ABSENT = object()


def _plainly_valid(raw: Any) -> bool:
    """True only if ``raw`` is valid by the schema (and its ``event_id`` a UUID); False means
    "ask the schema", not "invalid"."""
    if type(raw) is not dict or not (_ENVELOPE_REQUIRED <= raw.keys() <= _ENVELOPE_KEYS):
        return False
    event_id, pid, version, at = (raw["event_id"], raw["product_id"], raw["version"],
                                  raw["occurred_at"])
    if not (type(event_id) is str and _UUID_RE.fullmatch(event_id)
            and type(raw["type"]) is str and raw["type"] in EVENT_TYPES
            and type(pid) is int and 1 <= pid <= 9223372036854775807
            and type(version) is int and 1 <= version <= 2147483647
            and type(at) is str and _TIME_RE.fullmatch(at)):
        return False
    trace_id = raw.get("trace_id", _ABSENT)
    if trace_id is not _ABSENT and not (type(trace_id) is str and _TRACE_RE.fullmatch(trace_id)):
        return False
    data = raw["data"]
    if type(data) is not dict or len(data) > 32 or not _PRODUCT_REQUIRED <= data.keys():
        return False
    title, image, price, description, updated = (data["title"], data["image"], data["price"],
                                                 data["description"], data["updated_at"])
    if not (type(data["id"]) is int and data["id"] >= 1
            and type(data["version"]) is int and data["version"] >= 1
            and type(title) is str and 1 <= len(title) <= 200 and "\x00" not in title
            and type(image) is str and len(image) <= 500 and "\x00" not in image
            and type(price) is str and _PRICE_RE.fullmatch(price)
            and type(description) is str and len(description) <= 10000
            and "\x00" not in description
            and type(updated) is str and _TIME_RE.fullmatch(updated)):
        return False
    created = data.get("created_at", "")
    if type(created) is not str or len(created) > 40:
        return False
    if not data.keys() <= _PRODUCT_KNOWN:
        for key, value in data.items():  # fields a later version of the contract may add
            if key not in _PRODUCT_KNOWN and (type(value) not in _EXTRA_SCALARS
                                              or (type(value) is str and len(value) > 2000)):
                return False
    return True


# The whole fast path, ~3x cheaper again than _plainly_valid plus the checks after it: the event
# of the usual shape checked and built in one pass, its four patterned strings matched by one
# regular expression (they cannot hold the separator: any that does fails the match, and the
# slow path decides), its times parsed once. None means "ask the slow path", never "invalid".
_JOINED_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\x01"
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})"
    r"\x01"
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})"
    r"\x01[0-9]{1,10}\.[0-9]{2}")
_fromisoformat = datetime.fromisoformat
_EVENT_TYPES = frozenset(EVENT_TYPES)


def _fast_event(raw: Any) -> ProductEvent | None:
    if type(raw) is not dict or not (_ENVELOPE_REQUIRED <= raw.keys() <= _ENVELOPE_KEYS):
        return None
    data = raw["data"]
    if type(data) is not dict or len(data) > 32 or not _PRODUCT_REQUIRED <= data.keys():
        return None
    event_id, kind, pid, version, at = (raw["event_id"], raw["type"], raw["product_id"],
                                        raw["version"], raw["occurred_at"])
    title, image, price, description, updated = (data["title"], data["image"], data["price"],
                                                 data["description"], data["updated_at"])
    if not (type(pid) is int and 1 <= pid <= 9223372036854775807 and data["id"] == pid
            and type(data["id"]) is int
            and type(version) is int and 1 <= version <= 2147483647
            and data["version"] == version and type(data["version"]) is int
            and type(kind) is str and kind in _EVENT_TYPES
            and type(event_id) is str and type(at) is str and type(updated) is str
            and type(price) is str
            and _JOINED_RE.fullmatch(f"{event_id}\x01{at}\x01{updated}\x01{price}")
            and type(title) is str and 1 <= len(title) <= 200 and "\x00" not in title
            and type(image) is str and len(image) <= 500 and "\x00" not in image
            and type(description) is str and len(description) <= 10000
            and "\x00" not in description):
        return None
    trace_id = raw.get("trace_id")
    if trace_id is not None and not (type(trace_id) is str and _TRACE_RE.fullmatch(trace_id)):
        return None
    if "trace_id" in raw and trace_id is None:
        return None  # a null trace id: the schema refuses it, and says why
    created = data.get("created_at", "")
    if type(created) is not str or len(created) > 40:
        return None
    if len(data) > 8 or not data.keys() <= _PRODUCT_KNOWN:
        for key, value in data.items():  # fields a later version of the contract may add
            if key not in _PRODUCT_KNOWN and (type(value) not in _EXTRA_SCALARS
                                              or (type(value) is str and len(value) > 2000)):
                return None
    # storable times (as _storable_time): years 2-9998 in any offset, offsets of 14 h at most
    try:
        t1, t2 = _fromisoformat(at), _fromisoformat(updated)
    except ValueError:
        return None
    if not (1 < t1.year < 9999 and 1 < t2.year < 9999
            and (at[-1] == "Z" or -_MAX_OFFSET <= t1.utcoffset() <= _MAX_OFFSET)
            and (updated[-1] == "Z" or -_MAX_OFFSET <= t2.utcoffset() <= _MAX_OFFSET)):
        return None
    return ProductEvent(event_id, kind, pid, version, at, data, trace_id)


def _storable_time(where: str, text: str) -> None:
    """A time every consumer can store and read back: a valid RFC 3339 time with a UTC offset
    of at most 14 hours (the real ones; PostgreSQL refuses +16:00) whose UTC value is within
    years 1-9999 (what Python, and so Django, can represent; ``0001-01-01T00:00:00+01:00`` is
    year 0 in UTC)."""
    try:
        value = datetime.fromisoformat(text)
        if value.utcoffset() is None or abs(value.utcoffset()) > _MAX_OFFSET:
            raise ValueError("the UTC offset must be within -14:00..+14:00")
        if 1 < value.year < 9999:  # a day and 14 hours either side stay within years 1-9999
            return
        value.astimezone(UTC)
        (value - _MARGIN).astimezone(UTC)
        (value + _MARGIN).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidEvent(f"{where}: not a storable time (UTC years 1-9999): {exc}") from None


_MAX_OFFSET = timedelta(hours=14)
_MARGIN = timedelta(days=1)  # any time zone a consumer renders it in stays representable


def task_kwargs(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The Celery kwargs of one message carrying ``events``."""
    return {"events": events}


def events_summary(events) -> str:
    """``task_summary`` of valid events (``ProductEvent``), without building their dicts."""
    def one(ev: ProductEvent) -> str:
        return f"{ev.type} #{ev.product_id} v{ev.version} ({ev.event_id})"

    if len(events) <= 3:
        return "events=[" + ", ".join(one(e) for e in events) + "]"
    return f"events=[{one(events[0])}, ... {len(events)} events ..., {one(events[-1])}]"


def task_summary(events: list[dict[str, Any]]) -> str:
    """Short human-readable description for Flower (Celery's ``kwargsrepr``)."""
    def one(ev: dict[str, Any]) -> str:
        return (f"{ev.get('type')} #{ev.get('product_id')} v{ev.get('version')}"
                f" ({ev.get('event_id')})")

    if len(events) <= 3:
        return "events=[" + ", ".join(one(e) for e in events) + "]"
    return f"events=[{one(events[0])}, ... {len(events)} events ..., {one(events[-1])}]"
