"""Cursor pages in JSON are written from rows as text, without model instances or
``ProductSerializer`` (common.pagination, ``keyset_json_response``): the bytes must be the ones
DRF writes for the same rows. Generated products (any text PostgreSQL stores: quotes,
backslashes, control characters, U+2028, astral characters; prices with and without cents,
negative; times from year 1 to 9999 with and without microseconds) are read page by page
through the fast path and through DRF's own (the fast path turned off), and compared byte for
byte with every header but the request id."""

import base64
import datetime as dt
from decimal import Decimal
from json.encoder import encode_basestring

import msgspec
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from catalog_project.catalog import serializers as catalog_serializers
from catalog_project.catalog.models import MAX, Product
from common import pagination
from harness.pages import pages_walk

pytestmark = pytest.mark.django_db

# what a PostgreSQL text column holds: any Unicode scalar value but NUL
TEXT = st.characters(min_codepoint=1, exclude_categories=("Cs",))
TRICKY = st.sampled_from(['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x01", "\x1f", "\x7f",
                          "\u2028", "\u2029", "\u00e9", "\ufeff", "\U0001f600", "</script>",
                          "/", "\u0661", "%00"])


def text(max_size: int):
    """Up to ``max_size`` characters (a tricky piece may be several: the text is cut)."""
    return st.lists(st.one_of(TEXT, TRICKY), max_size=max_size).map(
        lambda pieces: "".join(pieces)[:max_size])


PRICES = st.one_of(
    st.decimals(min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"),
                places=2, allow_nan=False),
    st.sampled_from([Decimal("0"), Decimal("0.10"), Decimal("-0.01"), Decimal("9.9"),
                     Decimal("1E+3")]))  # (NaN: Django refuses to read it, a 500 either way)
TIMES = st.one_of(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59),
                 timezones=st.just(dt.UTC)),
    st.datetimes(timezones=st.just(dt.UTC)).map(lambda t: t.replace(microsecond=0)),
    st.sampled_from([dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                     dt.datetime(2026, 1, 1, 0, 0, 0, 120000, tzinfo=dt.UTC),
                     dt.datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC)]))
PRODUCTS = st.fixed_dictionaries({
    "title": text(MAX["title"]), "image": text(40), "price": PRICES,
    "description": text(300), "version": st.integers(0, 2**31 - 1), "updated_at": TIMES,
    "last_trace_id": text(64), "deleted": st.booleans()})
IDS = st.lists(st.integers(1, 2**63 - 1), min_size=0, max_size=12, unique=True)


def store(ids: list[int], products: list[dict]) -> None:
    Product.objects.all().delete()
    Product.objects.bulk_create([
        Product(id=i, last_event_id="00000000-0000-0000-0000-000000000001",
                applied_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), **p)
        for i, p in zip(ids, products, strict=False)])


def drf_only(monkeypatch) -> None:
    monkeypatch.setattr(pagination.PageOrCursorPagination, "keyset_json_response",
                        lambda *args, **kwargs: None)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ids=IDS, products=st.lists(PRODUCTS, min_size=12, max_size=12),
       page_size=st.integers(1, 5), chunk=st.integers(1, 6), versions=st.booleans())
def test_a_cursor_page_is_the_bytes_drf_writes(monkeypatch, ids, products, page_size, chunk,
                                               versions):
    """Also when the page is read in chunks (``CHUNK`` rows a query): nothing of it shows."""
    url = (f"/api/{'product-versions' if versions else 'products'}/?cursor=&"
           f"page_size={page_size}")
    with transaction.atomic():  # each example in a savepoint: a failing one spoils no other
        store(ids, products)
        with monkeypatch.context() as m:
            m.setattr(pagination.KeysetCursorPagination, "CHUNK", chunk)
            fast = pages_walk(APIClient().get, url)
        with monkeypatch.context() as m:
            drf_only(m)
            assert pages_walk(APIClient().get, url) == fast
        transaction.set_rollback(True)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/St_Johns"])
def test_times_in_another_current_time_zone_are_written_as_drf_writes_them(monkeypatch, zone):
    store([1, 2, 3], [{"title": "t", "image": "", "price": Decimal("1.00"), "description": "",
                       "version": 1, "updated_at": at, "last_trace_id": "", "deleted": False}
                      for at in (dt.datetime(2026, 7, 1, 12, tzinfo=dt.UTC),
                                 dt.datetime(1, 1, 1, 5, 0, 0, 5, tzinfo=dt.UTC),
                                 dt.datetime(2026, 1, 1, 0, 0, 0, 120000, tzinfo=dt.UTC))])
    with timezone.override(zone):
        fast = pages_walk(APIClient().get, "/api/products/?cursor=&page_size=2")
        with monkeypatch.context() as m:
            drf_only(m)
            assert pages_walk(APIClient().get, "/api/products/?cursor=&page_size=2") == fast


def test_the_fast_path_builds_no_model_instance_and_runs_no_serializer(monkeypatch):
    store([5, 6, 7], [{"title": "t", "image": "", "price": Decimal("1.00"), "description": "",
                       "version": 1, "updated_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                       "last_trace_id": "", "deleted": False}] * 3)

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path used a model instance or a serializer")

    for url in ("/api/products/?cursor=&page_size=2", "/api/product-versions/?cursor="):
        with monkeypatch.context() as m:
            m.setattr(Product, "from_db", classmethod(refuse))
            m.setattr(catalog_serializers.ProductSerializer, "to_representation", refuse)
            m.setattr(catalog_serializers.ProductVersionSerializer, "to_representation", refuse)
            with CaptureQueriesContext(connection) as queries:
                r = APIClient().get(url)
        assert r.status_code == 200 and len(r.json()["results"]) >= 2
        (sql,) = [q["sql"] for q in queries.captured_queries]
        assert "COUNT(" not in sql.upper() and "OFFSET" not in sql.upper(), sql


@pytest.mark.parametrize("accept", ["text/html", "application/json; indent=4"])
def test_other_renderings_still_go_through_drf(accept):
    """The browsable API and an indented JSON (``Accept: ...; indent=4``) are DRF's own."""
    store([1, 2], [{"title": "Mug \u2028", "image": "", "price": Decimal("9.90"),
                    "description": "", "version": 1,
                    "updated_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                    "last_trace_id": "", "deleted": False}] * 2)
    r = APIClient().get("/api/products/?cursor=&page_size=1", HTTP_ACCEPT=accept)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith(accept.split(";")[0])
    assert b"Mug" in r.content and (b"\n    " in r.content or accept == "text/html")


def test_a_page_ends_early_at_its_budget_and_next_starts_after_it(monkeypatch):
    """A page stops at a row once its JSON reaches ``BUDGET`` characters (at least one row a
    page): the pages still hold every live product once, forwards and backwards, and each
    page's rows are read ``CHUNK`` at a time."""
    sizes = [10, 400, 5, 5, 900, 5, 5, 5, 300, 5, 5, 1200, 5]
    store(list(range(1, len(sizes) + 1)),
          [{"title": "t", "image": "", "price": Decimal("1.00"), "description": "x" * n,
            "version": 1, "updated_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            "last_trace_id": "", "deleted": i == 3} for i, n in enumerate(sizes, 1)])
    monkeypatch.setattr(pagination.KeysetCursorPagination, "BUDGET", 600)
    monkeypatch.setattr(pagination.KeysetCursorPagination, "CHUNK", 2)
    client, url, forwards, pages = APIClient(), "/api/products/?cursor=&page_size=4", [], []
    while url:
        with CaptureQueriesContext(connection) as queries:
            body = client.get(url).json()
        ids = [p["id"] for p in body["results"]]
        pages.append(ids)
        assert ids and len(ids) <= 4
        assert len(queries.captured_queries) <= 3  # ceil((4 + 1) / 2), one keyset query each
        forwards += ids
        url, last = body["next"], body
    assert forwards == [i for i in range(1, len(sizes) + 1) if i != 3]
    assert any(len(ids) < 4 for ids in pages[:-1])  # some ended early
    backwards, url = [], last["previous"]
    while url:
        body = client.get(url).json()
        backwards = [p["id"] for p in body["results"]] + backwards
        url = body["previous"]
    assert backwards + pages[-1] == forwards


def test_cursor_pages_may_be_larger_than_numbered_ones():
    """Written from rows, a cursor page holds up to 10,000 products; numbered pages, and a
    cursor page DRF renders (the browsable API), up to 500."""
    client = APIClient()
    assert client.get("/api/products/?cursor=&page_size=10000").status_code == 200
    assert client.get("/api/products/?cursor=&page_size=10001").status_code == 400
    assert client.get("/api/products/?page_size=501").status_code == 400
    r = client.get("/api/products/?cursor=&page_size=501", HTTP_ACCEPT="text/html")
    assert r.status_code == 400


@pytest.mark.parametrize("raw", ["o=2", "o=1&p=3", "r=1&p=6", "r=1&o=1&p=7", "r=1", "p=99",
                                 "r=1&p=1", "o=20"])
@pytest.mark.parametrize("chunk", [1, 2, 1000])
def test_any_cursor_drf_accepts_gives_drf_s_page(monkeypatch, raw, chunk):
    """Cursors with an offset or reversed (``previous`` links write them; a client may craft
    others) read the rows DRF reads, also in chunks."""
    store(list(range(1, 10)), [{"title": f"p{i}", "image": "", "price": Decimal("1.00"),
                                "description": "", "version": 1,
                                "updated_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                                "last_trace_id": "", "deleted": i == 4} for i in range(1, 10)])
    cursor = base64.b64encode(raw.encode()).decode()
    url = f"/api/products/?page_size=3&cursor={cursor}"
    monkeypatch.setattr(pagination.KeysetCursorPagination, "CHUNK", chunk)
    fast = APIClient().get(url)
    with monkeypatch.context() as m:
        drf_only(m)
        drf = APIClient().get(url)
    assert fast.status_code == drf.status_code == 200
    assert fast.content == drf.content


def test_msgspec_escapes_every_character_as_the_standard_library_does():
    """Cursor pages are written by msgspec (``RowWriter``) and DRF's renderer by ``json``
    without ``ensure_ascii``: the same text for every character (surrogates cannot be stored
    in PostgreSQL's UTF-8)."""
    chars = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    for start in range(0, len(chars), 4096):
        text = "".join(chars[start:start + 4096])
        assert msgspec.json.encode(text) == encode_basestring(text).encode(), start
