"""Create products at a fixed rate, as the admin does; print each product's commit time.

    python bench/latency_driver.py RATE SECONDS   -> JSON lines {"id": ..., "t": unix time}

Each create commits what ``services.product_create`` commits (the product's row and its outbox
event, built by the admin's own ``events_encode``, with the relay's NOTIFY) in one transaction,
but as one statement without the ORM (``product_create_sql``): the driver stands in for a web
tier on the cores the pipeline uses, and through the ORM a create cost it ~1.6 ms of CPU (four
drivers reached 681-784 creates/s of 1,000). ``tests/admin/test_bench_driver.py`` checks that
both write the same rows."""

import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "admin_project.settings.local")

import django  # noqa: E402
from django.apps import apps  # noqa: E402

if not apps.ready:  # imported by a test, Django is set up already (and its logging configured)
    django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from admin_project.outbox.record import INSERT_ONE, EventItem, events_encode  # noqa: E402
from admin_project.products.models import Product  # noqa: E402
from admin_project.products.services import SNAPSHOT_COLUMNS, product_snapshot_row  # noqa: E402
from product_events import contract  # noqa: E402

_TABLE = Product._meta.db_table
# the product's row (its snapshot's columns, so one tuple serves both), then its outbox event
_SQL = (f"INSERT INTO {_TABLE} ({', '.join(SNAPSHOT_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(SNAPSHOT_COLUMNS))}); " + INSERT_ONE)


def product_ids_reserve(cursor, n: int) -> list[int]:
    """``n`` ids from the products' own sequence (as an INSERT without id would take them)."""
    cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                   [_TABLE, n])
    return [row[0] for row in cursor.fetchall()]


def product_create_sql(cursor, *, pk: int, title: str, price: Decimal) -> None:
    """``services.product_create(title=title, price=price)`` with the id ``pk`` reserved
    beforehand, on an autocommit connection: both INSERTs in one statement, so one
    transaction (PostgreSQL runs a multi-statement query as one)."""
    now = timezone.now()
    row = (pk, title, "", price, "", 1, now, now)  # SNAPSHOT_COLUMNS: image, description empty
    (event,) = events_encode(items=[EventItem(contract.PRODUCT_CREATED, pk, 1, now,
                                              product_snapshot_row(row))])
    cursor.execute(_SQL, (*row, *event))


def main() -> None:
    rate, seconds = float(sys.argv[1]), float(sys.argv[2])
    n = int(rate * seconds)
    connection.ensure_connection()
    raw = connection.connection
    raw.autocommit = True
    out = []
    with raw.cursor() as cursor:
        ids = product_ids_reserve(cursor, n)
        start = time.perf_counter()
        for i, pk in enumerate(ids):
            due = start + i / rate  # open loop: a slow create does not lower the offered rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            product_create_sql(cursor, pk=pk, title=f"latency {i}", price=Decimal("1.00"))
            out.append({"id": pk, "t": time.time()})  # right after the commit
        achieved = n / (time.perf_counter() - start)
    sys.stdout.write("".join(json.dumps(o) + "\n" for o in out))
    sys.stderr.write(f"achieved {achieved:.0f}/s\n")


if __name__ == "__main__":
    main()
