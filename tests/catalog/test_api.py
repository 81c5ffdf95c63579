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
