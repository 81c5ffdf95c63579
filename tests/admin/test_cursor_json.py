"""The admin's cursor pages in JSON are written from rows as text, without model instances or
``ProductSerializer`` (common.pagination, ``KeysetJSONListMixin``): the bytes must be DRF's.
Generated products (any text PostgreSQL stores, prices, creation and update times with and
without microseconds) are read page by page through the fast path and through DRF's own, and
compared byte for byte with every header but the request id."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admin_project.products import serializers as product_serializers
from admin_project.products.models import MAX, Product
from common import pagination
from harness.pages import pages_walk

TEXT = st.characters(min_codepoint=1, exclude_categories=("Cs",))
TRICKY = st.sampled_from(['"', "\\", "\n", "\x01", "\x1f", "\x7f", "\u2028", "\u2029",
                          "\U0001f600", "</script>"])
PRICES = st.decimals(min_value=Decimal("0"), max_value=Decimal("9999999999.99"), places=2,
                     allow_nan=False)
TIMES = st.one_of(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59),
                 timezones=st.just(dt.UTC)),
    st.datetimes(timezones=st.just(dt.UTC)).map(lambda t: t.replace(microsecond=0)))


def text(max_size: int):
    """Up to ``max_size`` characters (a tricky piece may be several: the text is cut)."""
    return st.lists(st.one_of(TEXT, TRICKY), max_size=max_size).map(
        lambda pieces: "".join(pieces)[:max_size])


PRODUCTS = st.fixed_dictionaries({
    "title": text(MAX["title"]), "image": text(40), "price": PRICES,
    "description": text(200), "version": st.integers(0, 2**31 - 1), "created_at": TIMES,
    "updated_at": TIMES})


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(products=st.lists(PRODUCTS, max_size=9), page_size=st.integers(1, 4),
       chunk=st.integers(1, 5))
def test_a_cursor_page_is_the_bytes_drf_writes(api, monkeypatch, products, page_size, chunk):
    url = f"/api/products/?cursor=&page_size={page_size}"
    with transaction.atomic():  # each example in a savepoint: a failing one spoils no other
        Product.objects.all().delete()
        Product.objects.bulk_create([Product(**p) for p in products])
        with monkeypatch.context() as m:
            m.setattr(pagination.KeysetCursorPagination, "CHUNK", chunk)
            fast = pages_walk(api.get, url)
        with monkeypatch.context() as m:
            m.setattr(pagination.PageOrCursorPagination, "keyset_json_response",
                      lambda *args, **kwargs: None)
            assert pages_walk(api.get, url) == fast
        transaction.set_rollback(True)


def test_the_fast_path_builds_no_model_instance_and_runs_no_serializer(api, monkeypatch):
    Product.objects.bulk_create([Product(title=f"p{i}", price=Decimal("1.50"))
                                 for i in range(3)])

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path used a model instance or a serializer")

    monkeypatch.setattr(Product, "from_db", classmethod(refuse))
    monkeypatch.setattr(product_serializers.ProductSerializer, "to_representation", refuse)
    with CaptureQueriesContext(connection) as queries:
        r = api.get("/api/products/?cursor=&page_size=2")
    assert r.status_code == 200 and [p["title"] for p in r.json()["results"]] == ["p0", "p1"]
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    assert api.get("/api/products/?cursor=&page_size=10000").status_code == 200
    assert api.get("/api/products/?page_size=501").status_code == 400


def test_anonymous_cursor_pages_are_still_refused(anon):
    assert anon.get("/api/products/?cursor=").status_code in (401, 403)


pytestmark = pytest.mark.django_db
