"""Resync and reconcile: make a new or repaired catalog converge on the admin's state."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from admin_project.outbox.publish import Publisher, events_publish_direct
from admin_project.outbox.record import (
    EventItem,
    events_encode,
    outbox_encoded_record,
    outbox_events_record,
)
from admin_project.outbox.selectors import outbox_pending_count
from product_events import contract

from . import services
from .models import Product, ProductTombstone, ResyncCheckpoint

logger = logging.getLogger("admin_project.resync")

CHECKPOINT = "all-products"
# products_resync counts the outbox's backlog at least this often (seconds)
RECOUNT_SECONDS = 1.0
WAIT_REPORT_SECONDS = 10.0  # says it waits for the relay this often
ORIGIN = f"resync@{socket.gethostname()}"  # the messages' origin header (Flower shows it)


_ID = services.SNAPSHOT_COLUMNS.index("id")
_VERSION = services.SNAPSHOT_COLUMNS.index("version")


def _items_for(products: Iterable[tuple],
               tombstones: Iterable[ProductTombstone]) -> list[EventItem]:
    """The events of ``products`` (rows of ``services.SNAPSHOT_COLUMNS``: tuples, not model
    instances, ~5 us a product less in a resync) and ``tombstones``, in product id order."""
    # occurred_at of a republished change is when it is published again (its data keeps the
    # change's own updated_at): the outbox age and the subscribers' lag measure the delivery,
    # not how old the product is (an old updated_at made every resync fire the lag alerts)
    now = timezone.now()
    snapshot = services.product_snapshot_row
    items = [EventItem(contract.PRODUCT_CREATED if row[_VERSION] == 1
                       else contract.PRODUCT_UPDATED, row[_ID], row[_VERSION], now, snapshot(row))
             for row in products]
    items += [EventItem(contract.PRODUCT_DELETED, t.product_id, t.version, now, t.data)
              for t in tombstones]
    return sorted(items, key=lambda item: item[1])


def _product_rows(queryset) -> list[tuple]:
    return list(queryset.values_list(*services.SNAPSHOT_COLUMNS))


def products_republish(*, product_ids: list[int]) -> int:
    """Queue the current state (or the deletion) of the given products. Returns events queued."""
    with transaction.atomic():
        items = _items_for(_product_rows(Product.objects.filter(pk__in=product_ids)
                                         .order_by("pk")),
                           ProductTombstone.objects.filter(product_id__in=product_ids))
        if items:
            outbox_events_record(items=items)
    return len(items)


def _next_batch(after: int, size: int) -> tuple[list[EventItem], bool]:
    """The events of the first ``size`` product ids above ``after``, live products and
    tombstones merged in id order (at most ``size`` events), and whether none is left after
    them. An id both live and deleted (not made by the admin, but a restore could leave one)
    sends its newer version only: one event per id."""
    products = _product_rows(Product.objects.filter(pk__gt=after).order_by("pk")[:size])
    tombstones = list(ProductTombstone.objects.filter(product_id__gt=after)
                      .order_by("product_id")[:size])
    by_id: dict[int, EventItem] = {}
    for item in _items_for(products, tombstones):
        known = by_id.get(item.product_id)
        if known is None or item.version > known.version:
            by_id[item.product_id] = item
    ids = sorted(by_id)
    # fewer than ``size`` of both kinds together: both ran out, this is the last batch
    return [by_id[pid] for pid in ids[:size]], len(ids) <= size and (
        len(products) < size and len(tombstones) < size)


def products_resync(*, batch_size: int = 500, rate: float | None = None,
                    max_pending: int = 20_000, restart: bool = False,
                    through_outbox: bool = False, publisher: Publisher | None = None,
                    sleep: Callable[[float], None] = time.sleep,
                    progress: Callable[[str], None] = logger.info) -> int:
    """Republish every product and every tombstone, in id order.

    Each batch is published straight to the broker (with confirms, in messages as the relay
    builds them) and checkpointed once confirmed: a snapshot sent again commits with nothing, so
    the outbox's atomicity buys it nothing, while writing, claiming and marking a row per event
    cost as much as the rest of the pipeline together (docs/performance.md). What the broker
    cannot take goes through the outbox, where the relay sends it or sets it aside with its
    reason: an event too large for any message, and, once a publish fails (the broker down or
    not confirming, no queue bound), that batch's unconfirmed events and every later batch
    (``through_outbox`` from the start: the broker need not be up). Nothing is lost: a batch's
    events are confirmed or recorded before its checkpoint commits; an unconfirmed one may
    arrive twice (consumers are idempotent by version).

    Every batch, the last one included, holds at most ``batch_size`` events and is sent only
    when it fits below ``max_pending`` pending outbox events (live changes, and resync's own once
    it goes through the outbox: resync never buries them; 0 = no limit; a batch is at most
    ``max_pending`` events then). Throttled
    to ``rate`` events/s at most, and resumable: progress is checkpointed per batch, so a new
    run continues where an interrupted one stopped (``restart`` starts over).

    The backlog is counted when the last count plus the events queued since (an upper bound of
    what resync itself left pending: the relay only takes events away) would pass
    ``max_pending``, and at least every ``RECOUNT_SECONDS``: not before every batch. A count
    reads every entry of the pending index, and the rows the relay sent stay there until a
    vacuum: counting before each of the 2,000 batches of a 1,000,000-product resync took 8.8 s
    of its 106 s (4 ms a count; up to 500 ms a count in another run), about 100 counts now."""
    if batch_size < 1 or max_pending < 0:
        raise ValueError("batch_size must be >= 1 and max_pending >= 0")
    size = min(batch_size, max_pending) if max_pending else batch_size
    checkpoint, _ = ResyncCheckpoint.objects.get_or_create(name=CHECKPOINT)
    if restart or checkpoint.finished:
        checkpoint.last_product_id, checkpoint.events, checkpoint.finished = 0, 0, False
        checkpoint.save()
    elif checkpoint.last_product_id:
        progress(f"resuming after product {checkpoint.last_product_id} "
                 f"({checkpoint.events} events already queued)")
    own_publisher = publisher is None and not through_outbox
    if own_publisher:
        publisher = Publisher()
    try:
        return _resync_batches(checkpoint, size=size, rate=rate, max_pending=max_pending,
                               publisher=None if through_outbox else publisher,
                               sleep=sleep, progress=progress)
    finally:
        if own_publisher:
            publisher.close()


def _resync_batches(checkpoint: ResyncCheckpoint, *, size: int, rate: float | None,
                    max_pending: int, publisher: Publisher | None,
                    sleep: Callable[[float], None], progress: Callable[[str], None]) -> int:
    queued = 0
    started = time.monotonic()
    pending, counted = 0, None  # the backlog's upper bound, and when it was last counted
    while True:
        if max_pending and (counted is None or pending + size > max_pending
                            or time.monotonic() - counted >= RECOUNT_SECONDS):
            said = None  # when it last said it waits
            while True:
                pending, counted = outbox_pending_count(), time.monotonic()
                if pending + size <= max_pending:
                    break
                if said is None or counted - said >= WAIT_REPORT_SECONDS:
                    said = counted
                    progress(f"waiting for the relay: {pending} events pending in the outbox "
                             f"(--max-pending {max_pending}, a batch {size})")
                sleep(0.5)  # let the relay catch up: resync must not bury live changes
        with transaction.atomic():
            items, last = _next_batch(checkpoint.last_product_id, size)
            recorded = published = 0
            if items and publisher is not None:
                outcome = events_publish_direct(events=events_encode(items=items),
                                                publisher=publisher, origin=ORIGIN)
                recorded = len(outbox_encoded_record(events=outcome.unsent))
                published = len(outcome.published)
                if outcome.error is not None:
                    publisher = None  # the rest of this run goes through the outbox
                    msg = (f"the broker did not take a batch ({type(outcome.error).__name__}: "
                           f"{outcome.error}); its unconfirmed events and every later batch "
                           "go through the outbox")
                    logger.warning("resync: %s", msg)
                    progress(msg)
            elif items:
                recorded = len(outbox_events_record(items=items))
            if items:
                checkpoint.last_product_id = items[-1].product_id
            checkpoint.events += len(items)
            checkpoint.finished = last
            checkpoint.save()
        queued += len(items)
        pending += recorded
        if items:
            if not recorded:
                how = "published"
            elif published:
                how = f"{published} published, {recorded} into the outbox"
            else:
                how = "into the outbox"
            progress(f"queued {queued} events (up to product {checkpoint.last_product_id}; "
                     f"this batch {how})")
        if checkpoint.finished:
            break
        if rate:
            ahead = queued / rate - (time.monotonic() - started)
            if ahead > 0:
                sleep(ahead)
    return queued


@dataclass
class Drift:
    missing: list[int] = field(default_factory=list)      # in admin, absent from the catalog
    behind: list[int] = field(default_factory=list)       # catalog has an older version
    ahead: list[int] = field(default_factory=list)        # catalog newer than admin (a bug)
    not_deleted: list[int] = field(default_factory=list)  # deleted in admin, live in catalog
    unknown: list[int] = field(default_factory=list)      # live in catalog, unknown to admin
    content: list[int] = field(default_factory=list)      # same version, other content
    checked: int = 0

    @property
    def total(self) -> int:
        return (len(self.missing) + len(self.behind) + len(self.ahead)
                + len(self.not_deleted) + len(self.unknown) + len(self.content))

    def repairable_ids(self) -> list[int]:
        return sorted(set(self.missing + self.behind + self.not_deleted))


def drift_report(drift: Drift, limit: int = 20) -> str:
    # ``checked``: product ids compared, the more of either side's in each range (an id only the
    # catalog holds counts too: it is checked, as `unknown`)
    lines = [f"checked {drift.checked} product ids (the admin's products and tombstones, the "
             f"catalog's rows): {drift.total} drifted"]
    for name, help_ in [("missing", "in admin, absent from the catalog"),
                        ("behind", "catalog has an older version"),
                        ("ahead", "catalog has a newer version than admin"),
                        ("not_deleted", "deleted in admin, still live in the catalog"),
                        ("content", "same version, other content (or deleted there)"),
                        ("unknown", "live in the catalog, unknown to admin")]:
        ids = getattr(drift, name)
        if ids:
            shown = ", ".join(map(str, ids[:limit])) + (" ..." if len(ids) > limit else "")
            lines.append(f"  {name:<12} {len(ids):>7}  ({help_}): {shown}")
    return "\n".join(lines)
