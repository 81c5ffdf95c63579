"""The anti-entropy digest endpoints are bounded per request (rows, not ids), say when a range is
too costly, and never take more than CATALOG_DIGESTS_AT_ONCE web workers (docs/operations.md,
"Anti-entropy")."""

from __future__ import annotations

import contextlib

import psycopg2
import pytest
from django.db import connection
from rest_framework.test import APIClient

from catalog_project.catalog import selectors
from catalog_project.catalog.models import Product
from product_events import digest

pytestmark = pytest.mark.django_db

STAMP = {"updated_at": "2026-11-26T15:00:00Z", "applied_at": "2026-11-26T15:00:00Z",
         "last_event_id": "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f", "price": "1.00",
         "version": 1}


@pytest.fixture
def client():
    return APIClient()


def _products(ids):
    Product.objects.bulk_create([Product(id=i, title=f"p{i}", **STAMP) for i in ids])


def test_a_digest_covers_at_most_max_rows_and_says_where_it_stopped(client):
    """Found by an outsider: one request digested the whole table, so past a few million rows
    it could only hit the statement timeout. Now a request covers at most max_rows rows (at most
    MAX_DIGEST_ROWS), whatever its range of ids."""
    ids = list(range(10, 1010, 10))  # 100 products, ids 10 apart
    _products(ids)
    whole = client.get(f"/api/product-digests/?start=1&end={digest.MAX_END}&parts=4").json()
    assert whole["end"] == digest.MAX_END and sum(p["count"] for p in whole["parts"]) == 100

    first = client.get(f"/api/product-digests/?start=1&end={digest.MAX_END}&parts=4"
                       "&max_rows=30").json()
    assert first["end"] == ids[30]  # the first id left out: the next request starts there
    assert sum(p["count"] for p in first["parts"]) == 30
    assert first["parts"][-1]["end"] <= first["end"]
    covered, lo = 0, 1
    for _ in range(10):
        body = client.get(f"/api/product-digests/?start={lo}&end={digest.MAX_END}&parts=4"
                          "&max_rows=30").json()
        covered += sum(p["count"] for p in body["parts"])
        assert body["end"] > lo
        lo = body["end"]
        if lo == digest.MAX_END:
            break
    assert covered == 100 and lo == digest.MAX_END
    # an exact multiple: the last answer reaches the end
    tail = client.get(f"/api/product-digests/?start={ids[70]}&end={digest.MAX_END}"
                      "&max_rows=30").json()
    assert tail["end"] == digest.MAX_END and sum(p["count"] for p in tail["parts"]) == 30
    for bad in ("max_rows=0", f"max_rows={digest.MAX_DIGEST_ROWS + 1}", "max_rows=x"):
        assert client.get(f"/api/product-digests/?start=1&end=9&{bad}").status_code == 400, bad


def test_a_range_too_costly_for_the_statement_timeout_is_a_400_with_a_code(client, monkeypatch):
    def slow(**kwargs):
        with connection.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 50")
            cur.execute("SELECT pg_sleep(2)")

    _products([1, 2])
    monkeypatch.setattr(selectors, "product_digests", slow)
    answer = client.get("/api/product-digests/?start=1&end=100")
    assert answer.status_code == 400
    assert answer.json()["code"] == "range_too_costly", answer.json()
    monkeypatch.undo()
    assert client.get("/api/product-digests/?start=1&end=100").status_code == 200


@contextlib.contextmanager
def _slots_held(n: int):
    """Another process computing digests: holds the first ``n`` digest slots."""
    db = connection.settings_dict
    other = psycopg2.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"],
                             port=db["PORT"], password=db["PASSWORD"] or None)
    try:
        with other.cursor() as cur:
            for slot in range(n):
                cur.execute("SELECT pg_advisory_lock(%s, %s)", [selectors.DIGEST_LOCK_CLASS, slot])
        yield
    finally:
        other.close()


def test_digests_busy_elsewhere_are_answered_429_at_once_and_reads_go_on(client, settings):
    """Found by an outsider: two concurrent whole-table digests held both sync web workers
    (a product read took 23 s). Now at most CATALOG_DIGESTS_AT_ONCE run at a time across all
    web processes; the others are answered 429 with Retry-After at once."""
    _products([1, 2, 3])
    settings.DIGESTS_AT_ONCE = 1
    with _slots_held(1):
        for url in ("/api/product-digests/?start=1&end=100",
                    "/api/product-digests/rows/?start=1&end=100"):
            busy = client.get(url)
            assert busy.status_code == 429 and "another digest" in busy.json()["detail"], url
            assert int(busy["Retry-After"]) >= 1
        assert client.get("/api/products/1/").status_code == 200
        settings.DIGESTS_AT_ONCE = 2  # a second slot is free
        assert client.get("/api/product-digests/?start=1&end=100").status_code == 200
    settings.DIGESTS_AT_ONCE = 1
    assert client.get("/api/product-digests/?start=1&end=100").status_code == 200
