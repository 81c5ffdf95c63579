"""Malformed task messages against the real worker (issue: "nothing kills the pipeline"): every
message that is not a valid task is parked with its reason, whatever its shape, and the worker
goes on consuming. A seeded generative test covers shapes nobody listed."""

import itertools
import json
import os
import uuid
from datetime import datetime

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness import amqp
from harness.waiting import wait_until
from product_events import contract

from .events import event
from .test_worker import PRODUCTS, row, task_body

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
DLQ = "catalog.products.dlq"
_product_ids = itertools.count(100_000)  # new ids for every example: no row exists beforehand
# `make test` runs a few seeded examples; `make faults` many more (GENERATIVE_EXAMPLES).
EXAMPLES = int(os.environ.get("GENERATIVE_EXAMPLES", "3"))


def headers_for(task_id: str | None = None) -> dict:
    task_id = task_id or str(uuid.uuid4())
    return {"lang": "py", "task": contract.TASK_APPLY_PRODUCT_EVENTS, "id": task_id,
            "root_id": task_id, "parent_id": None, "group": None, "retries": 0, "eta": None,
            "expires": None, "timelimit": [None, None], "argsrepr": "[]", "kwargsrepr": "x"}


def publish(body: bytes, headers: dict, marker: str, properties: dict | None = None) -> None:
    props = {"content_type": "application/json", "content_encoding": "utf-8"} | (properties or {})
    with amqp.broker_connection() as conn:
        conn.Producer().publish(body, exchange=PRODUCTS, routing_key="product.created",
                                headers=headers | {"x-poison-run": marker},
                                delivery_mode=2, mandatory=True, retry=False, **props)


def parked_of(marker: str, expected: int) -> list:
    got = []

    def enough():
        got.extend(m for m in amqp.drain(DLQ) if (m.headers or {}).get("x-poison-run") == marker)
        return len(got) >= expected

    wait_until(enough, timeout=60, message=lambda: f"{expected} parked (have {len(got)})")
    return got


def without(mapping: dict, key: str) -> dict:
    return {k: v for k, v in mapping.items() if k != key}


def valid_body(pid: int) -> bytes:
    return task_body([event(pid, 1)])


# The shapes an adversarial pass found killing the worker or dropped silently.
FOUND = {
    "body {}": (b"{}", headers_for()),
    "body [1]": (b"[1]", headers_for()),
    'body "x"': (b'"x"', headers_for()),
    "body null": (b"null", headers_for()),
    "task header is a list": (valid_body(1), headers_for() | {"task": ["a"]}),
    "timelimit [1]": (valid_body(1), headers_for() | {"timelimit": [1]}),
    'timelimit "x"': (valid_body(1), headers_for() | {"timelimit": "x"}),
    "no id header": (valid_body(1), without(headers_for(), "id")),
    'kwargs "x"': (json.dumps([[], "x", {}]).encode(), headers_for()),
    "kwargs [1]": (json.dumps([[], [1], {}]).encode(), headers_for()),
    "invalid utf-8": (b'[[], {"events": ["\xff"]}, {}]', headers_for()),
}


@pytest.mark.parametrize("case", sorted(FOUND))
def test_each_found_shape_is_parked_with_a_reason_and_the_worker_goes_on(worker, case):
    body, headers = FOUND[case]
    marker = uuid.uuid4().hex
    publish(body, headers, marker)
    publish(valid_body(900), headers_for(), marker)  # behind the poison
    (parked,) = parked_of(marker, 1)
    assert "invalid task message" in parked.headers["x-park-reason"] or \
        "undecodable body" in parked.headers["x-park-reason"], parked.headers
    raw = parked.body if isinstance(parked.body, bytes) else parked.body.encode()
    assert raw == body  # parked untouched
    wait_until(lambda: row(900), timeout=30, message="the valid message behind the poison")
    assert worker.alive(), worker.tail()


# --- generative: any malformed message, mixed with valid ones ---
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**31, 2**31 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=8)


def _is_body(v) -> bool:
    return (isinstance(v, list) and len(v) == 3 and isinstance(v[0], list)
            and isinstance(v[1], dict) and (v[2] is None or isinstance(v[2], dict)))


def _is_timelimit(v) -> bool:
    return v is None or (isinstance(v, list) and len(v) == 2 and all(
        t is None or (isinstance(t, (int, float)) and not isinstance(t, bool) and t >= 0)
        for t in v))


def _iso(v) -> bool:
    try:
        datetime.fromisoformat(v)
        return True
    except (TypeError, ValueError):
        return False


# Headers Celery or kombu give a meaning to, and values of any type for them (one mutation of a
# valid message may also add any of these, or an unknown header, next to a bad body).
_MEANINGFUL = ["compression", "lang", "shadow", "eta", "expires", "group", "group_index",
               "retries", "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr",
               "origin", "ignore_result", "stamped_headers", "stamps", "replaced_task_nesting",
               "x-death", "x-park-reason", "priority", "reply_to", "correlation_id"]
_CONTENT_TYPES = ["application/x-python-serialize", "application/x-yaml", "text/plain",
                  "application/json; charset=utf-8", "APPLICATION/JSON", "", "application/data",
                  "application/x-msgpack"]


@st.composite
def malformed(draw):
    """One message that is not a valid task, by one mutation of a valid one; returns
    (body, headers, properties)."""
    body, props = draw(_malformed_body_and_headers()), {}
    kind = draw(st.sampled_from(["as is", "as is", "content type", "encoding", "extra header"]))
    raw, headers = body
    if kind == "content type":
        props["content_type"] = draw(st.sampled_from(_CONTENT_TYPES) | _text)
    elif kind == "encoding":
        props["content_encoding"] = draw(st.sampled_from(["binary", "latin-1", "utf-16",
                                                          "gzip", "nonsense"]) | _text)
    elif kind == "extra header":
        name = draw(st.sampled_from(_MEANINGFUL) | _text.filter(bool))
        headers = headers | {name: draw(_json)}
    return raw, headers, props


@st.composite
def _malformed_body_and_headers(draw):
    headers, body = headers_for(), [[], {"events": [event(1, 1)]}, dict(EMBED)]
    kind = draw(st.sampled_from(["body", "args", "kwargs", "embed", "task", "id", "no id",
                                 "timelimit", "retries", "eta", "bytes", "huge", "huge json"]))
    if kind == "body":
        return json.dumps(draw(_json.filter(lambda v: not _is_body(v)))).encode(), headers
    if kind == "bytes":  # not UTF-8 JSON at all
        return b"\xff" + draw(st.binary(max_size=200)), headers
    if kind == "huge":  # megabytes that are not JSON
        return b"[" * draw(st.integers(1, 3)) * 1_000_000, headers
    if kind == "huge json":  # a valid shape, huge and deeply nested kwargs: not our task's
        depth = draw(st.integers(10, 50_000))
        return (b'[[], {"events": [' + b"[" * depth + b"]" * depth + b"], \"pad\": \""
                + b"p" * draw(st.integers(0, 2_000_000)) + b'\"}, null]'), headers
    if kind == "args":
        body[0] = draw(_json.filter(lambda v: not isinstance(v, list)))
    elif kind == "kwargs":
        body[1] = draw(_json.filter(lambda v: not isinstance(v, dict)))
    elif kind == "embed":
        body[2] = draw(_json.filter(lambda v: v is not None and not isinstance(v, dict)))
    elif kind == "task":
        headers["task"] = draw(_json.filter(lambda v: not isinstance(v, str) or not v))
    elif kind == "id":
        headers["id"] = draw(_json.filter(lambda v: not isinstance(v, str) or not v))
    elif kind == "no id":
        headers = without(headers, "id")
    elif kind == "timelimit":
        headers["timelimit"] = draw(_json.filter(lambda v: not _is_timelimit(v)))
    elif kind == "retries":
        headers["retries"] = draw(_json.filter(
            lambda v: v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0)))
    elif kind == "eta":
        headers["eta"] = draw(_json.filter(lambda v: v is not None and not _iso(v)))
    return json.dumps(body).encode(), headers


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, print_blob=True,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking takes too long here
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(stream=st.lists(malformed(), min_size=20, max_size=20))
def test_any_malformed_stream_is_parked_and_valid_events_land(worker, stream):
    marker = uuid.uuid4().hex
    valid_ids = []
    for i, (body, headers, properties) in enumerate(stream):
        publish(body, headers, marker, properties)
        if i % 4 == 0:
            valid_ids.append(next(_product_ids))
            assert row(valid_ids[-1]) is None
            publish(valid_body(valid_ids[-1]), headers_for(), marker)
    parked = parked_of(marker, len(stream))
    assert len(parked) == len(stream)  # messages in = applied + parked
    assert all(m.headers.get("x-park-reason") for m in parked)
    wait_until(lambda: all(row(pid) for pid in valid_ids), timeout=60,
               message="the valid messages of the stream applied")
    assert worker.alive(), worker.tail()
