"""The bench's latency driver commits what ``services.product_create`` commits: the product's
row and its outbox event (same payload, same NOTIFY), in one transaction. Its latency figures
are about the admin's writes only if that holds."""

import json
import select
import time
from decimal import Decimal

import psycopg2
import pytest
from django.conf import settings
from django.db import connection

from admin_project.outbox.models import OutboxEvent
from admin_project.outbox.record import CHANNEL
from admin_project.products import services
from admin_project.products.models import Product
from bench.latency_driver import product_create_sql, product_ids_reserve

pytestmark = pytest.mark.django_db(transaction=True)

TIMES = ("created_at", "updated_at")


def _written(pk: int) -> tuple[dict, dict]:
    product = Product.objects.values().get(pk=pk)
    event = OutboxEvent.objects.values("event_id", "type", "product_id", "version", "payload",
                                       "occurred_at", "size").get(product_id=pk)
    assert event["occurred_at"] == product["updated_at"] == product["created_at"]
    assert event["size"] == len(json.dumps(event["payload"], separators=(",", ":"),
                                           ensure_ascii=False).encode())
    for key in ("id", *TIMES):
        product.pop(key)
    payload = event.pop("payload")
    for key in TIMES:
        payload["data"].pop(key)
    assert payload.pop("event_id") == str(event["event_id"])
    assert payload.pop("product_id") == payload["data"].pop("id") == pk
    assert payload.pop("occurred_at")
    for key in ("event_id", "product_id", "occurred_at"):
        event.pop(key)
    return product, event | {"payload": payload}


@pytest.mark.parametrize("title, price", [("latency 1", Decimal("1.00")),
                                          ("é \u2028 \"quoted\" \\", Decimal("0")),
                                          ("x" * 200, Decimal("9999999999.99"))])
def test_driver_writes_what_product_create_writes(title, price):
    expected = services.product_create(title=title, price=price)
    with connection.cursor() as cursor:
        (pk,) = product_ids_reserve(cursor, 1)
        assert pk > expected.pk  # the products' own sequence
        connection.set_autocommit(True)
        with connection.cursor() as raw:
            product_create_sql(raw, pk=pk, title=title, price=price)
    want_product, want_event = _written(expected.pk)
    got_product, got_event = _written(pk)
    assert got_product == want_product
    assert got_event == want_event


def test_driver_create_is_one_transaction():
    """If the outbox row cannot be written, the product is not written either."""
    with connection.cursor() as cursor:
        (pk,) = product_ids_reserve(cursor, 1)
        cursor.execute("ALTER TABLE products_outboxevent ADD CONSTRAINT no_rows CHECK (false)"
                       " NOT VALID")
        try:
            with pytest.raises(Exception, match="no_rows"):
                product_create_sql(cursor, pk=pk, title="t", price=Decimal("1.00"))
        finally:
            cursor.execute("ALTER TABLE products_outboxevent DROP CONSTRAINT no_rows")
    assert not Product.objects.filter(pk=pk).exists()


def test_driver_create_wakes_the_relay():
    """The relay LISTENs: the driver's commit notifies it, as a create through the ORM does."""
    db = settings.DATABASES["default"]
    listener = psycopg2.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"],
                                port=db["PORT"], password=db["PASSWORD"], connect_timeout=5)
    try:
        listener.autocommit = True
        listener.cursor().execute(f"LISTEN {CHANNEL}")
        with connection.cursor() as cursor:
            (pk,) = product_ids_reserve(cursor, 1)
            connection.set_autocommit(True)
            product_create_sql(cursor, pk=pk, title="t", price=Decimal("1.00"))
        deadline = time.monotonic() + 5
        while not listener.notifies and time.monotonic() < deadline:
            select.select([listener], [], [], 0.1)
            listener.poll()
        assert [n.channel for n in listener.notifies] == [CHANNEL]
    finally:
        listener.close()
