"""The admin HTTP API: auth, validation, pagination, and one event per change."""

import pytest

from admin_project.outbox.models import OutboxEvent
from admin_project.products.models import Product
from product_events import contract

pytestmark = pytest.mark.django_db

VALID = {"title": "Mug", "price": "9.90", "image": "https://example.com/mug.png",
         "description": "A mug"}


def create(api, **overrides):
    resp = api.post("/api/products/", {**VALID, **overrides}, format="json")
    assert resp.status_code == 201, resp.content
    return resp.json()


def test_create_returns_product_and_records_created_event(api):
    body = create(api)
    assert set(body) == {"id", "title", "image", "price", "description", "version",
                         "created_at", "updated_at"}
    assert body["version"] == 1 and body["price"] == "9.90"
    (event,) = OutboxEvent.objects.all()
    assert (event.type, event.product_id, event.version) == ("product.created", body["id"], 1)
    assert event.sent_at is None
    parsed = contract.envelope_validate(event.payload)
    assert parsed.data["title"] == "Mug" and parsed.data["price"] == "9.90"


@pytest.mark.parametrize("method,path", [
    ("get", "/api/products/"), ("post", "/api/products/"), ("get", "/api/products/1/"),
    ("put", "/api/products/1/"), ("patch", "/api/products/1/"), ("delete", "/api/products/1/"),
])
def test_every_endpoint_requires_authentication(anon, method, path):
    resp = getattr(anon, method)(path, VALID, format="json")
    assert resp.status_code == 401
    assert not OutboxEvent.objects.exists()


def test_token_endpoint(anon, user):
    resp = anon.post("/api/auth/token/", {"username": "alice", "password": "s3cret-pass-1"},
                     format="json")
    assert resp.status_code == 200 and len(resp.json()["token"]) == 40
    anon.credentials(HTTP_AUTHORIZATION=f"Token {resp.json()['token']}")
    assert anon.get("/api/products/").status_code == 200
    bad = anon.post("/api/auth/token/", {"username": "alice", "password": "nope"}, format="json")
    assert bad.status_code == 400


def test_session_authentication_works(client, user):
    client.force_login(user)
    assert client.get("/api/products/").status_code == 200


@pytest.mark.parametrize("payload,field", [
    ({"price": "1.00"}, "title"),
    ({"title": "", "price": "1.00"}, "title"),
    ({"title": "x" * 201, "price": "1.00"}, "title"),
    ({"title": "nul\x00byte", "price": "1.00"}, "title"),
    ({"title": "t"}, "price"),
    ({"title": "t", "price": "-0.01"}, "price"),
    ({"title": "t", "price": "1.234"}, "price"),
    ({"title": "t", "price": "NaN"}, "price"),
    ({"title": "t", "price": "1e400"}, "price"),
    ({"title": "t", "price": "12345678901.00"}, "price"),
    ({"title": "t", "price": "1.00", "image": "not a url"}, "image"),
    ({"title": "t", "price": "1.00", "colour": "red"}, "colour"),
    ({"title": "t", "price": "1.00", "version": 7, "colour": "red"}, "colour"),
])
def test_bad_input_is_400_with_field_errors(api, payload, field):
    resp = api.post("/api/products/", payload, format="json")
    assert resp.status_code == 400, resp.content
    assert field in resp.json()
    assert not Product.objects.exists() and not OutboxEvent.objects.exists()


@pytest.mark.parametrize("body,content_type", [
    ("{not json", "application/json"),
    ("[1, 2]", "application/json"),
    ("null", "application/json"),
])
def test_malformed_body_is_400(api, body, content_type):
    resp = api.generic("POST", "/api/products/", body, content_type=content_type)
    assert resp.status_code == 400


def test_unknown_or_huge_id_is_404(api):
    assert api.get("/api/products/999/").status_code == 404
    assert api.get("/api/products/99999999999999999999999/").status_code == 404
    assert api.get("/api/products/abc/").status_code == 404


def test_pagination(api):
    for i in range(7):
        create(api, title=f"p{i}")
    page = api.get("/api/products/?page_size=3").json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert page["count"] == 7 and len(page["results"]) == 3 and page["previous"] is None
    assert [p["title"] for p in page["results"]] == ["p0", "p1", "p2"]
    last = api.get("/api/products/?page_size=3&page=3").json()
    assert [p["title"] for p in last["results"]] == ["p6"] and last["next"] is None
    assert api.get("/api/products/?page=99").status_code == 404


def test_cursor_pages_without_count_or_offset(api):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for i in range(7):
        create(api, title=f"p{i}")
    titles, url = [], "/api/products/?page_size=3&cursor="
    while url:
        with CaptureQueriesContext(connection) as queries:
            page = api.get(url).json()
        assert set(page) == {"next", "previous", "results"}
        sql = " ".join(q["sql"] for q in queries.captured_queries).upper()
        assert "COUNT(" not in sql and "OFFSET" not in sql, sql
        titles += [p["title"] for p in page["results"]]
        url = page["next"]
    assert titles == [f"p{i}" for i in range(7)]
    assert api.get("/api/products/?cursor=bm9wZQ%3D%3D").status_code == 404  # "nope"


def test_put_patch_delete_bump_version_and_record_events(api):
    pid = create(api)["id"]
    put = api.put(f"/api/products/{pid}/", {**VALID, "title": "Cup"}, format="json")
    assert put.status_code == 200 and put.json()["version"] == 2
    patch = api.patch(f"/api/products/{pid}/", {"price": "1.50"}, format="json")
    assert patch.status_code == 200
    assert patch.json()["version"] == 3 and patch.json()["title"] == "Cup"
    assert api.patch(f"/api/products/{pid}/", {"price": "-1"}, format="json").status_code == 400
    assert api.delete(f"/api/products/{pid}/").status_code == 204
    assert api.get(f"/api/products/{pid}/").status_code == 404
    events = list(OutboxEvent.objects.values_list("type", "version"))
    assert events == [("product.created", 1), ("product.updated", 2), ("product.updated", 3),
                      ("product.deleted", 4)]
    deleted = OutboxEvent.objects.get(version=4).payload
    assert deleted["data"]["title"] == "Cup" and deleted["data"]["version"] == 4


def test_all_field_errors_are_reported_together(api):
    resp = api.post("/api/products/", {"title": "", "price": "-1", "colour": "red"},
                    format="json")
    assert resp.status_code == 400
    assert set(resp.json()) == {"title", "price", "colour"}


def test_read_only_fields_are_ignored_not_written(api):
    body = create(api, version=99, id=1234)
    assert body["version"] == 1 and body["id"] != 1234
