"""The wire contract: the documented examples, the schema and the validator agree."""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from product_events import contract
from product_events.message import task_message_encode

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def doc_json_blocks() -> list:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)]


def test_schema_is_a_valid_json_schema():
    Draft202012Validator.check_schema(contract.event_schema())


def test_documented_envelope_and_message_are_valid():
    envelope, message = doc_json_blocks()
    assert contract.envelope_validate(envelope).version == 3
    args, kwargs, embed = message
    assert args == [] and set(kwargs) == {"events"} and set(embed) >= {"callbacks", "chain"}
    for event in kwargs["events"]:
        contract.envelope_validate(event)


def test_documented_names_match_the_code():
    text = DOC.read_text()
    for name in (contract.TASK_APPLY_PRODUCT_EVENTS, contract.EXCHANGE, *contract.EVENT_TYPES,
                 contract.ROUTING_PATTERN_ALL):
        assert f"`{name}`" in text, name
    from catalog_project.topology import SUBSCRIBERS  # plain kombu: no Django needed

    for sub in SUBSCRIBERS.values():  # the subscribers' queues, stable names for operators
        for name in (sub.queue_name, sub.dlq_name):
            assert f"`{name}`" in text, name


def test_envelope_build_round_trips():
    at = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    data = {"id": 5, "title": "t", "image": "", "price": "1.00", "description": "",
            "version": 2, "created_at": "2026-11-26T15:00:00Z",
            "updated_at": "2026-11-26T15:00:00Z"}
    env = contract.envelope_build(event_type="product.updated", product_id=5, version=2,
                                  occurred_at=at, data=data)
    assert env["occurred_at"] == "2026-11-26T15:00:00Z"
    assert json.loads(json.dumps(env)) == env
    assert contract.envelope_validate(env).product_id == 5
    with pytest.raises(ValueError):
        contract.envelope_build(event_type="product.updated", product_id=5, version=2,
                                occurred_at=at.replace(tzinfo=None), data=data)


def _mutate(path: str, value):
    envelope = copy.deepcopy(doc_json_blocks()[0])
    target = envelope
    *parents, last = path.split(".")
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return envelope


@pytest.mark.parametrize("path,value,fragment", [
    ("event_id", "not-a-uuid", "event_id"),
    ("type", "product.exploded", "type"),
    ("product_id", 0, "product_id"),
    ("product_id", "42", "product_id"),
    ("version", 0, "version"),
    ("occurred_at", "yesterday", "occurred_at"),
    ("data", None, "data"),
    ("data.title", KeyError, "title"),
    ("data.title", "", "title"),
    ("data.title", "x" * 201, "title"),
    ("data.title", "nul\u0000", "title"),
    ("data.price", "9.9", "price"),
    ("data.price", 9.9, "price"),
    ("data.id", 43, "data/id"),
    ("data.version", 4, "data/version"),
    ("data.updated_at", "2026-13-45T99:99:99Z", "not a storable time"),
    ("extra", 1, "Additional properties"),
])
def test_invalid_envelopes_are_rejected_with_a_reason(path, value, fragment):
    with pytest.raises(contract.InvalidEvent, match=re.escape(fragment)):
        contract.envelope_validate(_mutate(path, value))


@pytest.mark.parametrize("raw", [None, [], "text", 42])
def test_non_objects_are_rejected(raw):
    with pytest.raises(contract.InvalidEvent):
        contract.envelope_validate(raw)


def test_task_summary_is_short_for_flower():
    events = doc_json_blocks()[1][1]["events"] * 50
    summary = contract.task_summary(events)
    assert "50 events" in summary and len(summary) < 300


def celery_built(events: list[dict], task_id: str, summary: str):
    """What Celery itself builds for the same call (``send_task`` calls ``as_task_v2``)."""
    from celery import Celery

    app = Celery("contract-check", set_as_current=False)
    return app.amqp.as_task_v2(task_id, contract.TASK_APPLY_PRODUCT_EVENTS, args=[],
                               kwargs=contract.task_kwargs(events), argsrepr="[]",
                               kwargsrepr=summary, origin="origin@test", ignore_result=True)


@pytest.mark.parametrize("count", [1, 2, 150])
def test_message_encoder_builds_what_celery_builds(count):
    """product_events.message is the one encoder (relay, bench, tests): compare it with
    Celery's own protocol-2 message, so a Celery upgrade that changes it fails here."""
    at = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    events = [contract.envelope_build(
        event_type="product.updated", product_id=i, version=2, occurred_at=at,
        data={"id": i, "title": f"t{i}", "image": "", "price": "1.00", "description": "",
              "version": 2, "created_at": "2026-11-26T15:00:00Z",
              "updated_at": "2026-11-26T15:00:00Z"}) for i in range(1, count + 1)]
    ours = task_message_encode(events=events, origin="origin@test")
    celery = celery_built(events, ours.task_id, ours.summary)
    assert ours.headers == celery.headers
    assert json.loads(ours.body) == json.loads(json.dumps(celery.body))
    for key, value in celery.properties.items():
        assert ours.properties[key] == value, key
    assert ours.routing_key == "product.updated"
    # a task id names one message (UUID 4), an event id one change (UUID 5 of type, id, version)
    assert uuid.UUID(ours.task_id).version == 4
    assert ours.task_id != task_message_encode(events=events, origin="origin@test").task_id
    assert all(e["event_id"] == contract.event_id_for(e["type"], e["product_id"], e["version"])
               for e in events)
    # the spliced fast path (the relay's: the outbox's JSON text, unparsed) is the same bytes
    spliced = task_message_encode(events=events, origin="origin@test",
                                  events_json=[json.dumps(e, separators=(",", ":"))
                                               for e in events])
    assert json.loads(spliced.body) == json.loads(ours.body)


def test_message_encoder_refuses_mixed_types_and_empty_batches():
    with pytest.raises(ValueError, match="one event type"):
        task_message_encode(events=[{"type": "product.created", "event_id": "a"},
                                    {"type": "product.deleted", "event_id": "b"}])
    with pytest.raises(ValueError, match="at least one"):
        task_message_encode(events=[])


def test_an_event_id_names_the_change_not_the_emission():
    """The same (type, product id, version) always gets the same id; any other change another."""
    ids = {(t, pid, v): contract.event_id_for(t, pid, v)
           for t in contract.EVENT_TYPES for pid in (1, 2, 10**12) for v in (1, 2, 3)}
    assert len(set(ids.values())) == len(ids)
    assert all(contract.event_id_for(*key) == value for key, value in ids.items())
    assert all(uuid.UUID(value).version == 5 for value in ids.values())
    # stable across releases: subscribers store these ids (the audit log dedups by them)
    assert contract.event_id_for("product.updated", 42, 3) == \
        str(uuid.uuid5(contract.EVENT_ID_NAMESPACE, "product.updated:42:3")) == \
        "13476616-2fe5-58c9-9a48-eddbaa7a8140"  # the same vector in clients/node's tests
    with pytest.raises(contract.InvalidEvent):
        contract.event_id_for("product.renamed", 1, 1)


# --- the fast paths of envelope_validate (contract._fast_event, contract._plainly_valid) ---
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=2000, deadline=None)
@given(event_type=st.sampled_from(contract.EVENT_TYPES),
       product_id=st.integers(-(2**70), 2**70), version=st.integers(0, 2**40),
       name=st.text())
def test_event_ids_are_the_standard_librarys_uuid5(event_type, product_id, version, name):
    """event_id_for writes its UUID 5 by hand (no UUID objects): the same as uuid.uuid5, for any
    change and any name."""
    assert contract.event_id_for(event_type, product_id, version) == str(uuid.uuid5(
        contract.EVENT_ID_NAMESPACE, f"{event_type}:{product_id}:{version}"))
    assert contract._uuid5(name) == str(uuid.uuid5(contract.EVENT_ID_NAMESPACE, name))

_FIELDS = ["event_id", "type", "product_id", "version", "occurred_at", "trace_id", "data",
           "extra", "data.id", "data.title", "data.image", "data.price", "data.description",
           "data.version", "data.created_at", "data.updated_at", "data.extra", "data.more"]
_TRICKY = [None, True, False, 0, 1, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 1.0, 2.5,
           float("nan"), float("inf"), KeyError, "", "\x00", "nul\x00", "x" * 200, "x" * 201,
           "x" * 2001, "product.created", "product.deleted", "product.exploded",
           "2026-11-26T15:00:00Z", "2026-11-26T15:00:00.5+14:00", "2026-11-26T15:00:00Z\n",
           "2026-11-26 15:00:00Z", "9.99", "9.9", "1234567890.12", "12345678901.12", "9.99\n",
           "a3b9f0d2-6a55-5d4c-9f1e-2f6c1b7e8d40", "a3b9f0d2-6a55-5d4c-9f1e-2f6c1b7e8d40\n",
           str(uuid.uuid4()).upper(), "{a3b9f0d2-6a55-5d4c-9f1e-2f6c1b7e8d40}", "trace-id-1",
           "trace id 1", "t" * 64, "t" * 65, [], {}, [1], {"a": 1}]
_VALUES = st.one_of(
    st.sampled_from(_TRICKY), st.none(), st.booleans(),
    st.integers(min_value=-2, max_value=2**64), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.text(alphabet="0123456789-:.TZ+abcdefABCDEF\n\x00", max_size=40),
)


def _changed(changes) -> dict:
    envelope = copy.deepcopy(doc_json_blocks()[0])
    for path, value in changes:
        target = envelope
        *parents, last = path.split(".")
        for key in parents:
            target = target.get(key) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        if value is KeyError:
            target.pop(last, None)
        else:
            target[last] = value
    return envelope


def _fast_path_agrees(envelope) -> None:
    """The fast paths may pass an event to the schema for any reason, but must never call
    valid an event the schema (and the UUID check) rejects; and the event the whole fast path
    builds is the one the slow path builds (which raises if it disagrees)."""
    if contract._plainly_valid(envelope):
        contract.schema_validator()(envelope)  # raises if the schema disagrees
        uuid.UUID(envelope["event_id"])
    fast = contract._fast_event(envelope)
    if fast is not None:
        assert contract._validated(envelope) == fast


@pytest.mark.parametrize("path", _FIELDS)
def test_the_fast_path_accepts_only_what_the_schema_accepts_each_field(path):
    for value in _TRICKY:
        _fast_path_agrees(_changed([(path, value)]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_FIELDS), _VALUES), min_size=1, max_size=3))
def test_the_fast_path_accepts_only_what_the_schema_accepts(changes):
    _fast_path_agrees(_changed(changes))


def test_the_fast_path_takes_the_usual_events():
    """Else the worker pays for the schema on every event after all."""
    envelope, message = doc_json_blocks()
    assert contract._plainly_valid(envelope)
    assert all(contract._plainly_valid(e) for e in message[1]["events"])
    assert contract._fast_event(envelope) is not None
    assert all(contract._fast_event(e) is not None for e in message[1]["events"])
