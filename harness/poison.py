"""Malformed task messages for generative tests (hypothesis strategies): one mutation of a
valid task message of ours at any position of the body, the headers or the properties, plus
huge, deeply nested and undecodable bodies. Used by tests/catalog/test_poison.py (a real worker,
a few seeded examples in `make test`) and tests/faults (the whole stack, `make faults`)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from hypothesis import strategies as st

from product_events import contract

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
BUILTIN_TASKS = ["celery.accumulate", "celery.chord_unlock", "celery.map", "celery.starmap",
                 "celery.chunks", "celery.group", "celery.chain", "celery.chord",
                 "celery.backend_cleanup"]
_T0 = datetime(2026, 1, 1, tzinfo=UTC)


def valid_event(product_id: int, version: int = 1) -> dict:
    return contract.envelope_build(
        event_type=contract.PRODUCT_CREATED if version == 1 else contract.PRODUCT_UPDATED,
        product_id=product_id, version=version, occurred_at=_T0,
        data={"id": product_id, "title": f"p{product_id}", "image": "", "price": "1.00",
              "description": "", "version": version, "created_at": _T0.isoformat(),
              "updated_at": _T0.isoformat()})


def headers_for(task_id: str | None = None) -> dict:
    task_id = task_id or str(uuid.uuid4())
    return {"lang": "py", "task": contract.TASK_APPLY_PRODUCT_EVENTS, "id": task_id,
            "root_id": task_id, "parent_id": None, "group": None, "retries": 0, "eta": None,
            "expires": None, "timelimit": [None, None], "argsrepr": "[]", "kwargsrepr": "x"}


def without(mapping: dict, key: str) -> dict:
    return {k: v for k, v in mapping.items() if k != key}


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
    headers, body = headers_for(), [[], {"events": [valid_event(1)]}, dict(EMBED)]
    kind = draw(st.sampled_from(["body", "args", "kwargs", "embed", "task", "id", "no id",
                                 "timelimit", "retries", "eta", "bytes", "huge", "huge json",
                                 "workflow", "builtin task", "eta ahead", "expires"]))
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
    elif kind == "eta ahead":  # valid ISO, too far ahead (it would hold a prefetch slot)
        headers["eta"] = draw(st.datetimes(min_value=datetime(2100, 1, 1),
                                           max_value=datetime(9999, 12, 30),
                                           timezones=st.just(UTC))).isoformat()
    elif kind == "expires":  # any expiry: Celery would drop the event unapplied once passed
        headers["expires"] = draw(st.datetimes(timezones=st.just(UTC))).isoformat()
    elif kind == "workflow":  # callbacks, errbacks, a chain or a chord: more tasks to run
        signature = {"task": draw(st.sampled_from(BUILTIN_TASKS + [
            contract.TASK_APPLY_PRODUCT_EVENTS])), "args": [], "kwargs": {}, "options": {},
            "subtask_type": None, "immutable": False}
        key = draw(st.sampled_from(["callbacks", "errbacks", "chain", "chord"]))
        body[2] = dict(EMBED) | {key: signature if key == "chord" else
                                 [signature] * draw(st.integers(1, 50))}
    elif kind == "builtin task":  # registered in every Celery app, never ours to run
        headers["task"] = draw(st.sampled_from(BUILTIN_TASKS))
    return json.dumps(body).encode(), headers
