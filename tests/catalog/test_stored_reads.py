"""Whatever the contract accepts, the catalog can store and every read endpoint can serve
(issue: "nothing stored may make a read fail"). Generated events go through the real services
into the real PostgreSQL, then every catalog endpoint is read: no 5xx."""

import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from django.test import Client
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from catalog_project.audit import services as audit_services
from catalog_project.catalog import services
from product_events import contract

pytestmark = pytest.mark.django_db

MAX = contract.PRODUCT_MAX_LENGTH
EXAMPLES = int(os.environ.get("GENERATIVE_EXAMPLES", "60"))
_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


def _time(draw) -> str:
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23)))
    return moment.replace(tzinfo=draw(_offsets)).isoformat()


@st.composite
def envelopes(draw) -> dict:
    product_id = draw(st.integers(1, 2**63 - 1))
    version = draw(st.integers(1, 2**31 - 1))
    data = {"id": product_id, "version": version,
            "title": draw(st.text(_chars, min_size=1, max_size=MAX["title"])),
            "image": draw(st.text(_chars, max_size=MAX["image"])),
            "description": draw(st.text(_chars, max_size=MAX["description"] // 20)
                                | st.just("d" * MAX["description"])),
            "price": f"{draw(st.integers(0, 10**10 - 1))}.{draw(st.integers(0, 99)):02d}",
            "created_at": draw(st.text(_chars, max_size=MAX["created_at"])),
            "updated_at": _time(draw)}
    data |= draw(st.dictionaries(st.text(_chars, max_size=10), st.integers() | st.text(_chars),
                                 max_size=5))
    envelope = {"event_id": str(uuid.uuid4()), "product_id": product_id, "version": version,
                "type": draw(st.sampled_from(contract.EVENT_TYPES)),
                "occurred_at": _time(draw), "data": data}
    if draw(st.booleans()):
        envelope["trace_id"] = draw(st.from_regex(r"\A[A-Za-z0-9._:-]{8,64}\Z"))
    return envelope


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(raw=envelopes())
def test_every_event_the_contract_accepts_is_stored_and_readable(raw):
    try:
        event = contract.envelope_validate(raw)
    except contract.InvalidEvent:
        assume(False)
    services.product_events_apply(events=[event])
    audit_services.product_changes_record(events=[event])
    client = Client()
    pid = event.product_id
    for url in ["/api/products/?page_size=500", f"/api/products/{pid}/",
                "/api/product-changes/?page_size=500", f"/api/product-changes/?product_id={pid}",
                f"/api/product-changes/{event.event_id}/", "/api/product-versions/?page_size=500"]:
        r = client.get(url)
        assert r.status_code < 500, (url, r.status_code, raw)


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_times_outside_what_can_be_stored_are_refused_by_the_contract(at):
    from .events import event
    raw = event(1, 1)
    raw["occurred_at"] = at
    with pytest.raises(contract.InvalidEvent, match="storable"):
        contract.envelope_validate(raw)
    raw = event(1, 1)
    raw["data"]["updated_at"] = at
    with pytest.raises(contract.InvalidEvent, match="storable"):
        contract.envelope_validate(raw)
