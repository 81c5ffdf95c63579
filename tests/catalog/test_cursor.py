"""Keyset pages (``?cursor=``): every live product once, in id order, at the same cost on any
page (one ``id > last`` query, no COUNT, no OFFSET); a cursor the API did not make is a 404."""

import base64

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from catalog_project.catalog.services import product_events_apply
from product_events import contract

from .events import event, parsed

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return APIClient()


def walk(client, url):
    pages, ids = [], []
    while url:
        with CaptureQueriesContext(connection) as queries:
            r = client.get(url)
        assert r.status_code == 200, r.content
        body = r.json()
        assert set(body) == {"next", "previous", "results"}  # no count
        pages.append([q["sql"] for q in queries.captured_queries])
        ids += [p["id"] for p in body["results"]]
        url = body["next"]
    return pages, ids


def test_the_cursor_walks_every_live_product_once_with_one_keyset_query_a_page(client):
    product_events_apply(events=parsed(*[event(i, 1) for i in range(1, 24)]))
    product_events_apply(events=parsed(*[event(i, 2, type_=contract.PRODUCT_DELETED)
                                         for i in (4, 5, 17)]))
    pages, ids = walk(client, "/api/products/?page_size=5&cursor=")
    assert ids == [i for i in range(1, 24) if i not in (4, 5, 17)]
    assert len(pages) == 4
    for sqls in pages:
        (sql,) = sqls
        assert "COUNT(" not in sql.upper() and "OFFSET" not in sql.upper(), sql
    assert all('"id" >' in sqls[0] for sqls in pages[1:]), pages
    # the numbered pages list the same products
    numbered = client.get("/api/products/?page_size=500").json()
    assert [p["id"] for p in numbered["results"]] == ids and numbered["count"] == len(ids)


def test_previous_goes_back(client):
    product_events_apply(events=parsed(*[event(i, 1) for i in range(1, 8)]))
    first = client.get("/api/products/?page_size=3&cursor=").json()
    second = client.get(first["next"]).json()
    assert [p["id"] for p in second["results"]] == [4, 5, 6]
    assert [p["id"] for p in client.get(second["previous"]).json()["results"]] == [1, 2, 3]


def test_the_versions_list_has_a_cursor_too(client):
    product_events_apply(events=parsed(event(1, 1), event(2, 3),
                                       event(2, 4, type_=contract.PRODUCT_DELETED)))
    _, ids = walk(client, "/api/product-versions/?page_size=1&cursor=")
    assert ids == [1, 2]


def _cursor(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode()


@pytest.mark.parametrize("cursor", [
    "garbage!", "%%%", "Zm9v\u00e9", _cursor("p=abc"), _cursor("p=-1"), _cursor("p=1e3"),
    _cursor("p=99999999999999999999"), _cursor("p=\u0661"), _cursor("o=-5"), _cursor("r=x"),
    _cursor("p=1%00"),
])
def test_a_cursor_the_api_did_not_make_is_a_404(client, cursor):
    product_events_apply(events=parsed(event(1, 1)))
    r = client.get("/api/products/", {"cursor": cursor})
    assert r.status_code == 404, (cursor, r.status_code, r.content[:200])
    assert r.json() == {"detail": "Invalid cursor"}


def test_the_cursor_decides_and_a_list_without_a_cursor_mode_is_400(client):
    product_events_apply(events=parsed(*[event(i, 1) for i in range(1, 4)]))
    r = client.get("/api/products/?cursor=&page=2&page_size=2")
    assert r.status_code == 200 and [p["id"] for p in r.json()["results"]] == [1, 2]
    assert client.get("/api/products/?cursor=&page=0").status_code == 404  # still a page number
    r = client.get("/api/product-changes/?product_id=1&cursor=")
    assert r.status_code == 400 and "cursor" in r.json()
    assert client.get("/api/products/?cursor=&page_size=10001").status_code == 400
