"""Tombstones and resync (reconcile runs against a real catalog in tests/e2e)."""

from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admin_project.outbox.models import OutboxEvent
from admin_project.products import resync, services
from admin_project.products.models import Product, ProductTombstone, ResyncCheckpoint
from product_events import contract

pytestmark = pytest.mark.django_db


def make(n):
    return [services.product_create(title=f"p{i}", price=Decimal("1.00")).pk for i in range(n)]


def outbox_resync(**kwargs):
    """Resync through the outbox (``--through-outbox``): these tests read what it records.
    Published straight to the broker (the default): test_resync_direct.py."""
    return resync.products_resync(through_outbox=True, **kwargs)


def fresh_events():
    return list(OutboxEvent.objects.filter(sent_at__isnull=True).order_by("id")
                .values_list("type", "product_id", "version"))


def test_delete_leaves_a_tombstone_with_the_last_state():
    (pid,) = make(1)
    services.product_update(product_id=pid, data={"title": "last"})
    services.product_delete(product_id=pid)
    tomb = ProductTombstone.objects.get(product_id=pid)
    assert tomb.version == 3 and tomb.data["title"] == "last"


def test_resync_republishes_products_and_deletions_in_id_order():
    ids = make(5)
    services.product_update(product_id=ids[1], data={"title": "v2"})
    services.product_delete(product_id=ids[2])
    OutboxEvent.objects.all().delete()
    assert outbox_resync(batch_size=2, rate=None, max_pending=0) == 5
    assert fresh_events() == [
        ("product.created", ids[0], 1), ("product.updated", ids[1], 2),
        ("product.deleted", ids[2], 2), ("product.created", ids[3], 1),
        ("product.created", ids[4], 1)]
    for event in OutboxEvent.objects.all():
        contract.envelope_validate(event.payload)
    assert ResyncCheckpoint.objects.get().finished


class Interrupt(Exception):
    pass


def interrupted_after_two_batches(**kwargs) -> list[str]:
    """Run ``products_resync`` (``kwargs``) and interrupt it, as Ctrl-C would, once it reported
    its second batch; returns what it reported."""
    calls = []

    def progress(msg):
        calls.append(msg)
        if len(calls) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        resync.products_resync(progress=progress, **kwargs)
    return calls


def test_resync_resumes_after_an_interruption():
    make(6)
    OutboxEvent.objects.all().delete()
    calls = interrupted_after_two_batches(batch_size=2, max_pending=0, through_outbox=True)
    assert OutboxEvent.objects.count() == 4  # two batches committed before the interruption
    assert outbox_resync(batch_size=2, max_pending=0, progress=calls.append) == 2
    assert any("resuming after product" in c for c in calls)
    assert OutboxEvent.objects.count() == 6  # nothing twice, nothing skipped
    assert outbox_resync(batch_size=2, max_pending=0) == 6  # finished: starts over


def test_resync_is_throttled_and_waits_for_the_relay():
    make(10)
    slept = []
    outbox_resync(batch_size=5, rate=5, max_pending=0, restart=True,
                  sleep=slept.append)
    assert slept and sum(slept) > 0.5  # 10 events at 5/s: about 1 s of pauses

    pending_waits = []

    def fake_sleep(seconds):
        pending_waits.append(seconds)
        OutboxEvent.objects.update(sent_at="2026-01-01T00:00:00Z")  # the relay caught up

    outbox_resync(batch_size=5, rate=None, max_pending=5, restart=True,
                  sleep=fake_sleep)
    assert pending_waits  # paused while more than 5 events were pending


def test_the_backlog_is_counted_when_it_could_pass_the_limit_not_before_every_batch(monkeypatch):
    """Counting the pending outbox before every batch cost 4 ms to 500 ms a count once a resync
    had filled a large outbox: the count runs when the last count plus what resync queued since
    could pass --max-pending, and at least every RECOUNT_SECONDS (live changes)."""
    make(20)
    OutboxEvent.objects.all().delete()
    counts = []
    real_count = resync.outbox_pending_count

    def counted():
        counts.append(real_count())
        return counts[-1]

    monkeypatch.setattr(resync, "outbox_pending_count", counted)
    monkeypatch.setattr(resync, "RECOUNT_SECONDS", 3600)
    assert outbox_resync(batch_size=2, max_pending=1000, restart=True) == 20
    assert counts == [0]  # 10 batches, one count: 20 events never come near 1,000

    # a limit the batches reach: counted again each time the bound would pass it; the relay
    # (the fake sleep) takes the backlog away
    OutboxEvent.objects.all().delete()
    counts.clear()

    def relay_catches_up(_seconds):
        OutboxEvent.objects.filter(sent_at__isnull=True).update(sent_at=timezone.now())

    assert outbox_resync(batch_size=2, max_pending=6, restart=True,
                         sleep=relay_catches_up) == 20
    assert 3 <= len(counts) < 20 and max(counts) <= 6, counts

    # and at least every RECOUNT_SECONDS: a change made meanwhile by someone else is seen
    OutboxEvent.objects.all().delete()
    counts.clear()
    monkeypatch.setattr(resync, "RECOUNT_SECONDS", 0)
    assert outbox_resync(batch_size=2, max_pending=1000, restart=True) == 20
    assert counts == list(range(0, 22, 2))  # before every batch (and the last, empty, one)


def test_republish_given_ids_including_a_deleted_one():
    ids = make(3)
    services.product_delete(product_id=ids[0])
    OutboxEvent.objects.all().delete()
    assert resync.products_republish(product_ids=[ids[0], ids[2], 999]) == 2
    assert sorted(fresh_events()) == sorted([("product.deleted", ids[0], 2),
                                             ("product.created", ids[2], 1)])


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(live=st.integers(0, 25), deleted=st.integers(0, 10), batch_size=st.integers(1, 12),
       max_pending=st.one_of(st.just(0), st.integers(1, 15)))
def test_every_batch_obeys_batch_size_and_max_pending(live, deleted, batch_size, max_pending):
    """Every batch, the last one included, holds at most --batch-size events and keeps the
    pending outbox within --max-pending; every product and every deletion is emitted once."""
    OutboxEvent.objects.all().delete()
    ProductTombstone.objects.all().delete()
    Product.objects.all().delete()
    ids = make(live + deleted)
    for pid in ids[::2][:deleted]:  # deletions interleaved with live products
        services.product_delete(product_id=pid)
    OutboxEvent.objects.all().delete()

    batches, pending_after = [], []

    def progress(msg):  # called once per batch written, with the total so far
        if not msg.startswith("queued"):
            assert msg.startswith("waiting for the relay: "), msg
            return
        total = int(msg.split()[1])
        batches.append(total - sum(batches))
        pending_after.append(OutboxEvent.objects.filter(sent_at__isnull=True).count())

    def relay_catches_up(_seconds):
        OutboxEvent.objects.filter(sent_at__isnull=True).update(sent_at=timezone.now())

    n = outbox_resync(batch_size=batch_size, rate=None, max_pending=max_pending,
                      restart=True, sleep=relay_catches_up, progress=progress)
    assert n == len(ids) == sum(batches)
    assert all(1 <= b <= batch_size for b in batches), batches
    if max_pending:
        assert all(p <= max_pending for p in pending_after), (pending_after, max_pending)
    emitted = list(OutboxEvent.objects.order_by("id").values_list("product_id", flat=True))
    assert emitted == sorted(ids)  # each once, in id order
    assert ResyncCheckpoint.objects.get().finished


def test_resync_twice_records_the_same_event_ids():
    """An event id names a change: resync (and a repair) send each change under the id it
    first had, so subscribers that keep history (the audit log) record it once."""
    ids = make(3)
    services.product_update(product_id=ids[1], data={"title": "v2"})
    services.product_delete(product_id=ids[2])
    first = set(OutboxEvent.objects.values_list("type", "product_id", "version", "event_id"))
    outbox_resync(batch_size=2, max_pending=0, restart=True)
    outbox_resync(batch_size=2, max_pending=0, restart=True)
    resync.products_republish(product_ids=ids)
    rows = list(OutboxEvent.objects.values_list("type", "product_id", "version", "event_id"))
    assert len(rows) == 5 + 3 * 3  # the outbox holds the same change more than once
    current = {("product.created", ids[0], 1), ("product.updated", ids[1], 2),
               ("product.deleted", ids[2], 2)}
    assert {r[:3] for r in rows if r not in first} == set()  # nothing new: ids as first sent
    assert {r[:3] for r in rows} >= current
    for t, pid, v, event_id in rows:
        assert str(event_id) == contract.event_id_for(t, pid, v)


def test_resync_reads_rows_whose_snapshot_is_the_models_snapshot():
    """Resync and republish read products as rows of SNAPSHOT_COLUMNS (no model instances): each
    row's snapshot is exactly what the model instance gives, field for field."""
    ids = make(3)
    services.product_update(product_id=ids[1], data={"price": Decimal("0.10"),
                                                     "description": "ü\u2028\"x\"\n"})
    services.product_update(product_id=ids[2], data={"price": Decimal("-0.00")})
    rows = Product.objects.order_by("pk").values_list(*services.SNAPSHOT_COLUMNS)
    for row, product in zip(rows, Product.objects.order_by("pk"), strict=True):
        assert services.product_snapshot_row(row) == services.product_snapshot(product=product)
    OutboxEvent.objects.all().delete()
    assert resync.products_republish(product_ids=ids) == 3
    sent = {e.product_id: e.payload["data"] for e in OutboxEvent.objects.all()}
    assert sent == {p.pk: services.product_snapshot(product=p) for p in Product.objects.all()}
