"""The catalog read API: no login, same fields as the admin, tombstones hidden."""

import pytest
from rest_framework.test import APIClient

from catalog_project.catalog.services import product_events_apply
from product_events import contract

from .events import event, parsed

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


def test_list_and_detail_without_login(client):
    product_events_apply(events=parsed(*[event(i, 1) for i in range(1, 6)]))
    product_events_apply(events=parsed(event(3, 2, type_=contract.PRODUCT_DELETED)))
    page = client.get("/api/products/?page_size=2").json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert page["count"] == 4
    assert [p["id"] for p in page["results"]] == [1, 2]
    detail = client.get("/api/products/1/").json()
    assert set(detail) == {"id", "title", "image", "price", "description", "version",
                           "updated_at", "last_trace_id"}
    assert detail["price"] == "1.00" and detail["version"] == 1


def test_unknown_and_deleted_are_404(client):
    product_events_apply(events=parsed(event(1, 1), event(1, 2, type_=contract.PRODUCT_DELETED)))
    assert client.get("/api/products/1/").status_code == 404
    assert client.get("/api/products/2/").status_code == 404
    assert client.get("/api/products/99999999999999999999/").status_code == 404


def test_versions_list_names_deleted_products_too(client):
    product_events_apply(events=parsed(event(1, 1), event(2, 3), event(3, 1),
                                       event(2, 4, type_=contract.PRODUCT_DELETED)))
    page = client.get("/api/product-versions/?page_size=2").json()
    assert page["count"] == 3 and page["next"]
    assert page["results"] == [{"id": 1, "version": 1, "deleted": False},
                               {"id": 2, "version": 4, "deleted": True}]
    assert client.get(page["next"]).json()["results"] == [
        {"id": 3, "version": 1, "deleted": False}]
    assert client.post("/api/product-versions/", {}, format="json").status_code == 405


def test_read_only(client):
    assert client.post("/api/products/", {"title": "x"}, format="json").status_code == 405
    product_events_apply(events=parsed(event(1, 1)))
    assert client.delete("/api/products/1/").status_code == 405


# --- anti-entropy digests -------------------------------------------------------------------
def test_product_digests_cover_ranges_and_refuse_unbounded_queries(client, db):
    from catalog_project.catalog.models import Product
    from product_events import digest

    stamp = {"updated_at": "2026-11-26T15:00:00Z", "applied_at": "2026-11-26T15:00:00Z",
             "last_event_id": "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"}
    for pid in (3, 4, 70):
        Product.objects.create(id=pid, title=f"p{pid}", price="1.00", version=1, **stamp)
    Product.objects.create(id=71, title="gone", price="1.00", version=2, deleted=True, **stamp)
    body = client.get("/api/product-digests/?start=1&end=101&parts=4").json()
    assert body["max_id"] == 71
    assert [(p["start"], p["end"], p["count"]) for p in body["parts"]] == [(1, 26, 2),
                                                                          (51, 76, 2)]
    rows = client.get("/api/product-digests/rows/?start=60&end=80").json()
    assert [(r["id"], r["version"], r["deleted"]) for r in rows["rows"]] == [(70, 1, False),
                                                                             (71, 2, True)]
    assert rows["next"] is None
    empty = client.get("/api/product-digests/?start=9&end=5").json()
    assert empty["parts"] == [] and empty["max_id"] == 71
    before = body["parts"][1]["digest"]
    Product.objects.filter(id=70).update(title="changed")
    after = client.get("/api/product-digests/?start=1&end=101&parts=4").json()["parts"][1]
    assert after["digest"] != before and after["count"] == 2
    for bad in ["start=-1&end=9", "start=1&end=10&parts=0",
                f"start=1&end=10&parts={digest.MAX_PARTS + 1}", "start=1", "end=9",
                f"start=0&end={2**63 + 1}", "start=x&end=9", "start=²&end=9"]:
        assert client.get(f"/api/product-digests/?{bad}").status_code == 400, bad
    assert client.get("/api/product-digests/rows/?start=x&end=1002").status_code == 400


def test_digest_rows_come_in_bounded_pages(client, db):
    from catalog_project.catalog.models import Product
    from product_events import digest

    stamp = {"updated_at": "2026-11-26T15:00:00Z", "applied_at": "2026-11-26T15:00:00Z",
             "last_event_id": "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f", "price": "1.00",
             "version": 1}
    Product.objects.bulk_create([Product(id=i, title=f"p{i}", **stamp)
                                 for i in range(1, digest.MAX_ROWS + 6)])
    first = client.get(f"/api/product-digests/rows/?start=0&end={2**63 - 1}").json()
    assert len(first["rows"]) == digest.MAX_ROWS and first["next"] == digest.MAX_ROWS + 1
    rest = client.get(f"/api/product-digests/rows/?start={first['next']}&end={2**63 - 1}").json()
    assert [r["id"] for r in rest["rows"]] == list(range(digest.MAX_ROWS + 1, digest.MAX_ROWS + 6))
    assert rest["next"] is None


def test_the_largest_product_id_is_covered_by_the_digests_and_readable(client, db):
    from catalog_project.catalog.models import Product
    from product_events import digest

    Product.objects.create(id=digest.MAX_ID, title="last", price="1.00", version=1,
                           updated_at="2026-11-26T15:00:00Z", applied_at="2026-11-26T15:00:00Z",
                           last_event_id="6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f")
    body = client.get(f"/api/product-digests/?start=1&end={digest.MAX_END}&parts=2").json()
    assert body["max_id"] == digest.MAX_ID and sum(p["count"] for p in body["parts"]) == 1
    assert client.get(f"/api/products/{digest.MAX_ID}/").status_code == 200
    assert client.get(f"/api/products/{digest.MAX_ID + 1}/").status_code == 404


def test_the_digests_have_their_own_rate(client, db, settings):
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    cache.clear()
    rates = dict(ScopedRateThrottle.THROTTLE_RATES, digests="3/minute", anon="1000/minute")
    ScopedRateThrottle.THROTTLE_RATES = rates
    try:
        codes = [client.get("/api/product-digests/?start=1&end=100").status_code
                 for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert client.get("/api/products/").status_code == 200  # the rest of the API is open
    finally:
        del ScopedRateThrottle.THROTTLE_RATES
        cache.clear()


def test_a_throttle_keeps_two_counters_per_client_not_its_history(client, db):
    """DRF's throttles kept each client's whole history in one cache entry, read and rewritten
    on every request (~100 KB each way at the default 12,000 a minute); ours keep two small
    counters (common/throttling.py). Many requests later a client's entries are still ints."""
    from django.core.cache import cache
    from django.test import RequestFactory

    from common.throttling import AnonRateThrottle

    cache.clear()
    throttle = AnonRateThrottle()
    request = RequestFactory().get("/api/products/", REMOTE_ADDR="10.1.2.3")
    from rest_framework.request import Request

    drf_request = Request(request)
    allowed = [AnonRateThrottle().allow_request(drf_request, None) for _ in range(300)]
    assert all(allowed)
    key = throttle.get_cache_key(drf_request, None)
    stored = {k: v for k, v in cache.get_many([f"{key}:{s}" for s in range(
        int(throttle.timer() // throttle.duration) - 1,
        int(throttle.timer() // throttle.duration) + 1)]).items() if v is not None}
    assert stored and all(isinstance(v, int) for v in stored.values()), stored
    assert sum(stored.values()) == 300
    assert cache.get(key) is None  # no history list
    cache.clear()
