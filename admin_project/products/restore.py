"""After the admin database is restored from a backup: make it dominate what the subscribers saw.

A backup forgets every change made after it was taken, but the catalog (every subscriber) has
applied them. Without a fence the restored admin would reuse product ids and versions: the
product it creates next gets an id the catalog already holds at a higher version (the catalog
ignores the new one, keeps showing the old), and a product updated after the backup is "ahead"
in the catalog, where no republish can bring it back (an older version is never applied).

``products_restore_fence`` reads every id and version the catalog holds (deleted ones too,
``GET /api/product-versions/``) and, in one transaction:

* a product the admin has, held by the catalog at a version >= the admin's (deleted, or newer):
  raised to the catalog's version + 1 and republished: the catalog takes the restored state;
* a tombstone the admin has, held live by the catalog at >= its version: deleted again at the
  catalog's version + 1;
* a product the catalog shows that the admin does not know (created after the backup): recorded
  as deleted at the catalog's version + 1, with the catalog's last state, and the delete
  published: it disappears;
* the product id sequence moves past every id the catalog, the products and the tombstones
  hold: an id is never given to two products.

Equal versions of a live product are the same change (one history up to the backup), left alone.
Every event it records is an ordinary outbox event with a (product id, version) no subscriber
has seen, so it goes through the relay like any change. Run again, it finds nothing to do."""

from __future__ import annotations

from dataclasses import dataclass, field

import requests
from django.db import connection, transaction

from . import services
from .models import Product, ProductTombstone


@dataclass(frozen=True)
class CatalogVersion:
    version: int
    deleted: bool


@dataclass
class FenceReport:
    raised: list[int] = field(default_factory=list)      # republished above the catalog
    deleted: list[int] = field(default_factory=list)     # deleted at catalog version + 1
    catalog_ids: int = 0
    next_id: int = 1

    @property
    def changes(self) -> int:
        return len(self.raised) + len(self.deleted)


def catalog_product_versions(*, catalog_url: str, timeout: float = 10.0
                             ) -> dict[int, CatalogVersion]:
    """Every product id the catalog holds, deleted ones included: {id: (version, deleted)}."""
    out: dict[int, CatalogVersion] = {}
    url = f"{catalog_url.rstrip('/')}/api/product-versions/?page_size=10000&cursor="
    with requests.Session() as session:
        while url:
            resp = session.get(url, timeout=timeout)
            resp.raise_for_status()
            body = resp.json()
            out.update({p["id"]: CatalogVersion(p["version"], p["deleted"])
                        for p in body["results"]})
            url = body["next"]
    return out


def _catalog_product(*, catalog_url: str, product_id: int) -> dict:
    resp = requests.get(f"{catalog_url.rstrip('/')}/api/products/{product_id}/", timeout=10)
    resp.raise_for_status()
    p = resp.json()
    return {k: p[k] for k in ("title", "image", "price", "description")}


def products_restore_fence(*, catalog_url: str, dry_run: bool = False) -> FenceReport:
    catalog = catalog_product_versions(catalog_url=catalog_url)
    report = FenceReport(catalog_ids=len(catalog))
    with transaction.atomic():
        with connection.cursor() as cursor:  # no write of the admin may interleave
            cursor.execute(f"LOCK TABLE {Product._meta.db_table}, "
                           f"{ProductTombstone._meta.db_table} IN EXCLUSIVE MODE")
        admin = dict(Product.objects.values_list("pk", "version"))
        tombstones = {t.product_id: t for t in ProductTombstone.objects.all()}
        for pid, theirs in sorted(catalog.items()):
            if pid in admin:
                if theirs.version > admin[pid] or (theirs.version == admin[pid]
                                                   and theirs.deleted):
                    report.raised.append(pid)
                    if not dry_run:
                        services.product_version_raise(product_id=pid,
                                                       version=theirs.version + 1)
            elif pid in tombstones:
                mine = tombstones[pid]
                if theirs.version > mine.version or (theirs.version == mine.version
                                                     and not theirs.deleted):
                    report.deleted.append(pid)
                    if not dry_run:
                        services.product_deletion_record(product_id=pid,
                                                         version=theirs.version + 1,
                                                         data=mine.data)
            elif not theirs.deleted:
                report.deleted.append(pid)
                if not dry_run:
                    services.product_deletion_record(
                        product_id=pid, version=theirs.version + 1,
                        data=_catalog_product(catalog_url=catalog_url, product_id=pid))
        highest = max([0, *catalog, *admin, *tombstones])
        table = Product._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')")
            (sequence,) = cursor.fetchone()
            cursor.execute(f"SELECT last_value, is_called FROM {sequence}")
            last, called = cursor.fetchone()
            current = last if called else last - 1  # the highest id already handed out
            if highest > current and not dry_run:
                cursor.execute("SELECT setval(%s, %s, true)", [sequence, highest])
            report.next_id = max(highest, current) + 1
    return report
