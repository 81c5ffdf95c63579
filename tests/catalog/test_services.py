"""Applying events: idempotent, ordered by version, tombstones, one transaction per batch."""

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog_project.catalog.models import Product
from catalog_project.catalog.services import product_events_apply
from product_events import contract

from .events import event, parsed

pytestmark = pytest.mark.django_db


def apply(*events):
    return product_events_apply(events=parsed(*events))


def test_create_then_update():
    assert apply(event(1, 1)).applied == 1
    assert apply(event(1, 2, title="new")).applied == 1
    p = Product.objects.get(pk=1)
    assert (p.title, p.version, p.deleted) == ("new", 2, False)


def test_duplicate_and_stale_events_change_nothing():
    apply(event(1, 1), event(1, 3, title="v3"))
    before = Product.objects.get(pk=1)
    result = apply(event(1, 3, title="dup"), event(1, 2, title="old"), event(1, 1))
    assert (result.applied, result.stale) == (0, 3)
    after = Product.objects.get(pk=1)
    assert (after.title, after.version, after.applied_at) == ("v3", 3, before.applied_at)


def test_delete_leaves_a_tombstone_that_late_updates_cannot_undo():
    apply(event(1, 1))
    apply(event(1, 3, type_=contract.PRODUCT_DELETED))
    assert apply(event(1, 2, title="late")).applied == 0
    p = Product.objects.get(pk=1)
    assert p.deleted and p.version == 3


def test_delete_arriving_first_blocks_the_create():
    apply(event(7, 2, type_=contract.PRODUCT_DELETED))
    apply(event(7, 1))
    assert Product.objects.get(pk=7).deleted


def test_batch_keeps_the_newest_per_product():
    result = apply(event(1, 2, title="two"), event(2, 1), event(1, 1), event(1, 3, title="three"))
    assert result.applied == 2 and result.stale == 2
    assert Product.objects.get(pk=1).title == "three"
    assert Product.objects.count() == 2


def test_empty_batch():
    assert product_events_apply(events=[]).applied == 0


_ids = itertools.count(1000)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), length=st.integers(1, 8), ends_deleted=st.booleans(),
       batch_size=st.integers(1, 5))
def test_any_order_and_duplication_converges_to_the_last_version(data, length, ends_deleted,
                                                                  batch_size):
    pid = next(_ids)
    history = [event(pid, v) for v in range(1, length + 1)]
    if ends_deleted:
        history.append(event(pid, length + 1, type_=contract.PRODUCT_DELETED))
    # every event at least once, some several times, in any order
    extra = data.draw(st.lists(st.sampled_from(history), max_size=10))
    delivered = data.draw(st.permutations(history + extra))
    for start in range(0, len(delivered), batch_size):
        apply(*delivered[start:start + batch_size])
    last = history[-1]
    row = Product.objects.get(pk=pid)
    assert row.version == last["version"]
    assert row.deleted == ends_deleted
    assert row.title == last["data"]["title"]
    assert str(row.last_event_id) == last["event_id"]


def test_the_audit_log_records_a_change_once_and_counts_its_deliveries(client):
    from catalog_project.audit.models import ProductChange
    from catalog_project.audit.services import product_changes_record

    v1, v2 = event(70, 1), event(70, 2)
    first = product_changes_record(events=parsed(v1, v2))
    assert (first.applied, first.stale) == (2, 0)
    # redelivered, and resent by a resync (the same event ids), one of them twice in a batch
    again = product_changes_record(events=parsed(v2, v2, v1))
    assert (again.applied, again.stale) == (0, 3)
    rows = {c.version: c for c in ProductChange.objects.filter(product_id=70)}
    assert {v: c.deliveries for v, c in rows.items()} == {1: 2, 2: 2}
    assert rows[2].last_delivered_at >= rows[2].recorded_at
    shown = client.get("/api/product-changes/?product_id=70").json()["results"]
    assert [(c["version"], c["deliveries"]) for c in shown] == [(1, 2), (2, 2)]


def test_the_audit_log_dates_a_change_sent_again_when_it_happened(client):
    """Outside finding 11: after a catalog restore a resync recreates the audit rows the backup
    lost, in events whose occurred_at is when the resync sent them (so that lag and outbox age
    measure the delivery). The row keeps that as occurred_at and dates the change itself by the
    snapshot's updated_at (changed_at)."""
    from datetime import timedelta

    from catalog_project.audit.models import ProductChange
    from catalog_project.audit.services import product_changes_record

    from .events import T0

    resent = event(71, 4, title="v4")
    changed = resent["occurred_at"]
    later = T0 + timedelta(days=30)
    resent["occurred_at"] = later.isoformat().replace("+00:00", "Z")
    resent["trace_id"] = "resync-0001"
    assert product_changes_record(events=parsed(resent)).applied == 1
    row = ProductChange.objects.get(product_id=71)
    assert row.changed_at == T0 + timedelta(seconds=4)
    assert row.occurred_at == later
    shown = client.get("/api/product-changes/?product_id=71").json()["results"]
    assert [(c["changed_at"], c["occurred_at"]) for c in shown] == [
        (changed.replace("+00:00", "Z"), resent["occurred_at"])], shown
