"""Malformed task messages against the real worker (issue: "nothing kills the pipeline"): every
message that is not a valid task is parked with its reason, whatever its shape, and the worker
goes on consuming. A seeded generative test covers shapes nobody listed."""

import itertools
import json
import os
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness import amqp
from harness.poison import headers_for, malformed, without
from harness.waiting import wait_until

from .events import event
from .test_worker import PRODUCTS, row, task_body

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

DLQ = "catalog.products.dlq"
_product_ids = itertools.count(100_000)  # new ids for every example: no row exists beforehand
# `make test` runs a few seeded examples; `make faults` many more (GENERATIVE_EXAMPLES).
EXAMPLES = int(os.environ.get("GENERATIVE_EXAMPLES", "3"))


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
    # an outsider's second pass
    "eta far ahead": (valid_body(1), headers_for() | {"eta": "9999-12-31T23:59:59+00:00"}),
    "eta beyond the times a worker holds": (valid_body(1),
                                            headers_for() | {"eta": "0001-01-01T00:00:00+14:00"}),
    "expires passed": (valid_body(1), headers_for() | {"expires": "2001-01-01T00:00:00+00:00"}),
    "expires as an ISO week": (valid_body(1), headers_for() | {"expires": "2026-W49-4"}),
    "celery.accumulate": (valid_body(1), headers_for() | {"task": "celery.accumulate"}),
    "celery.chord_unlock": (valid_body(1), headers_for() | {"task": "celery.chord_unlock"}),
    "celery.chunks": (json.dumps([[], {"task": {"task": "celery.map"}, "it": [[1]] * 500,
                                       "n": 1}, None]).encode(),
                      headers_for() | {"task": "celery.chunks"}),
    "callbacks": (json.dumps([[], {"events": [event(1, 1)]}, {
        "callbacks": [{"task": "catalog.apply_product_events", "args": [], "kwargs": {},
                       "options": {}}] * 300, "errbacks": None, "chain": None,
        "chord": None}]).encode(), headers_for()),
    "chain": (json.dumps([[], {"events": [event(1, 1)]}, {
        "callbacks": None, "errbacks": None, "chord": None,
        "chain": [{"task": "celery.accumulate", "args": [], "kwargs": {}, "options": {}}]}]
                         ).encode(), headers_for()),
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


def test_messages_with_an_eta_far_ahead_do_not_hold_the_prefetch_window(worker):
    """More far-future etas than the worker prefetches: all parked at once, and the valid
    messages behind them land (Celery would hold each one unacked until its eta)."""
    marker = uuid.uuid4().hex
    for _ in range(30):
        publish(valid_body(901), headers_for() | {"eta": "9999-12-31T23:59:59+00:00"}, marker)
    publish(valid_body(902), headers_for(), marker)
    parked = parked_of(marker, 30)
    assert all("'eta' is more than 60 s ahead" in m.headers["x-park-reason"] for m in parked)
    wait_until(lambda: row(902), timeout=30, message="the valid message behind 30 etas")
    assert row(901) is None and worker.alive()


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
    unexplained = [(m.headers, m.content_type, m.content_encoding, m.body[:200])
                   for m in parked if not m.headers.get("x-park-reason")]
    assert not unexplained, unexplained
    wait_until(lambda: all(row(pid) for pid in valid_ids), timeout=60,
               message="the valid messages of the stream applied")
    assert worker.alive(), worker.tail()
