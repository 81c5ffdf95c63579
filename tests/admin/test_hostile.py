"""Hostile input against the admin API (issue: "no 5xx"): Unicode digits, deep JSON, concurrent
writes to one product, and the DEBUG error page. Real PostgreSQL."""

import threading
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client, override_settings

from admin_project.products import services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("value", ["²", "١٢", "٣", "1²", "１", "-1", "0", "501", "9" * 30, ""])
def test_page_size_in_anything_but_ascii_digits_is_400(api, value):
    r = api.get("/api/products/", {"page_size": value})
    assert r.status_code == 400, (value, r.status_code)
    assert "page_size" in r.json()


@pytest.mark.parametrize("value", ["²", "١", "１", "9" * 5000])
def test_page_in_anything_but_ascii_digits_is_404(api, value):
    assert api.get("/api/products/", {"page": value}).status_code == 404


@pytest.mark.parametrize("path", ["/api/auth/token/", "/api/products/"])
def test_deeply_nested_json_is_400(api, path):
    body = "[" * 100_000 + "]" * 100_000
    r = api.post(path, body, content_type="application/json")
    assert r.status_code == 400, r.content[:200]
    assert "nested" in r.json()["detail"]


def test_concurrent_deletes_and_patches_of_one_product_answer_2xx_or_404(api, user):
    for _round in range(5):
        product = services.product_create(title="contended", price=Decimal("1.00"))
        start = threading.Barrier(6)
        statuses = []

        def write(kind, product=product, start=start, statuses=statuses):
            from django.db import connection
            start.wait(10)
            try:
                if kind == "delete":
                    r = api.delete(f"/api/products/{product.pk}/")
                else:
                    r = api.patch(f"/api/products/{product.pk}/", {"title": "x"}, format="json")
                statuses.append(r.status_code)
            finally:
                connection.close()

        threads = [threading.Thread(target=write, args=(k,))
                   for k in ["delete"] * 3 + ["patch"] * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(statuses) == 6 and set(statuses) <= {200, 204, 404}, statuses
        assert statuses.count(204) == 1, statuses


@override_settings(DEBUG=True, ROOT_URLCONF="tests.admin.urls_boom")
def test_the_debug_error_page_shows_no_secret():
    r = Client(raise_request_exception=False).get("/boom/")
    assert r.status_code == 500
    page = r.content.decode()
    assert "RuntimeError" in page  # still the debug page, useful to a developer
    assert "very-secret-pw" not in page
    assert settings.SECRET_KEY not in page
    broker_password = settings.CELERY_BROKER_URL.split("://", 1)[1].split("@")[0].split(":")[1]
    assert f":{broker_password}@" not in page


# --- found by an outsider's second pass -----------------------------------------------------
@pytest.fixture
def superuser_client(db):
    from django.contrib.auth.models import User

    su = User.objects.create_superuser("hostile-su", "su@example.invalid", "pw-hostile-1")
    c = Client()
    c.force_login(su)
    return c


@pytest.mark.parametrize("query", [
    "created_at__year=-1", "created_at__year=99999999999999999999999", "updated_at__month=13",
    "pk=%00", "pk=a%00b", "title=%00", "id__in=1,x", "price__gt=abc", "version=-99999999999999999",
    "created_at__gte=not-a-date", "created_at__range=1", "title__regex=(", "price=1e999999",
])
@pytest.mark.parametrize("path", ["/admin/products/product/", "/admin/authtoken/tokenproxy/",
                                  "/admin/outbox/outboxevent/", "/admin/auth/user/"])
def test_admin_changelist_filters_from_the_query_string_never_give_a_5xx(superuser_client, path,
                                                                        query):
    r = superuser_client.get(f"{path}?{query}")
    assert r.status_code < 500, (path, query, r.status_code)


@pytest.mark.parametrize("charset", ["punycode", "rot13", "idna", "nonsense", "utf-7", "zlib",
                                     "base64", "hex", "uu", "bz2"])
def test_a_body_in_a_charset_that_is_not_text_is_415(charset):
    from harness.hostile import guarded_client

    form = f"application/x-www-form-urlencoded; charset={charset}"
    r = guarded_client().generic("POST", "/api/products/?q=%C2%B2", b"title=T&price=1.00",
                                content_type=form)
    assert r.status_code == 415, (charset, r.status_code, r.content[:200])
    r = guarded_client().generic("POST", "/admin/login/", b"username=a&password=b",
                      content_type=f"application/x-www-form-urlencoded; charset={charset}")
    assert r.status_code == 415, (charset, r.status_code)


@pytest.mark.parametrize("charset", ["utf-8", "UTF8", "latin-1", "us-ascii"])
def test_a_body_in_a_text_charset_is_read(api, charset):
    r = api.generic("POST", "/api/products/", b"title=T&price=1.00",
                    content_type=f"application/x-www-form-urlencoded; charset={charset}")
    assert r.status_code == 201, (charset, r.content[:200])


@pytest.mark.parametrize("price", ["-0", "-0.00", "-0.0", -0.0, "0", 0])
def test_a_negative_zero_price_is_a_zero_price(api, price):
    r = api.post("/api/products/", {"title": "Zero", "price": price}, format="json")
    assert r.status_code == 201 and r.json()["price"] == "0.00", r.content
    pid = r.json()["id"]
    for method in ("patch", "put"):
        r = getattr(api, method)(f"/api/products/{pid}/", {"title": "Zero", "price": price},
                                 format="json")
        assert r.status_code == 200 and r.json()["price"] == "0.00", (method, r.content)


def test_a_negative_zero_price_in_the_django_admin_form(superuser_client):
    r = superuser_client.post("/admin/products/product/add/",
                              {"title": "Zero", "price": "-0", "image": "", "description": ""})
    assert r.status_code == 302, r.content[:2000]  # saved, not a form with errors
    from admin_project.outbox.models import OutboxEvent
    from admin_project.products.models import Product

    p = Product.objects.get(title="Zero")
    assert OutboxEvent.objects.filter(product_id=p.pk).get().payload["data"]["price"] == "0.00"
