"""The database connection is terminated under a request (an administrator's
``pg_terminate_backend``, a restart, a failover): real PostgreSQL, the request's own backend
terminated from another connection at a chosen statement. Before anything is committed the
request runs once more and the client sees nothing; a COMMIT cut off by the lost connection is
resolved by asking the server (on a new connection) what became of the transaction: committed
-> the client gets its answer, aborted -> the request runs once more; when nobody can tell, a
503 with Retry-After, never a 500. A database that stays away answers 503 too."""

from __future__ import annotations

import contextlib
import time
from decimal import Decimal

import psycopg2
import pytest
from django.conf import settings
from django.db import connection

from admin_project.outbox.models import OutboxEvent
from admin_project.products import services
from admin_project.products.models import Product
from common.postgresql.base import DatabaseWrapper
from harness.blackhole import CommitCutProxy

pytestmark = pytest.mark.django_db(transaction=True)


def _terminate(pid: int) -> None:
    db = settings.DATABASES["default"]
    with contextlib.closing(psycopg2.connect(dbname=db["NAME"], user=db["USER"],
                                             host=db["HOST"], port=db["PORT"],
                                             password=db["PASSWORD"])) as other:
        other.autocommit = True
        with other.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", [pid])
            assert cur.fetchone()[0]


@contextlib.contextmanager
def terminated_at(match: str, *, after: bool = False):
    """Terminate this connection's backend once, just before (or just after) the first
    statement containing ``match``; yields the list of the statements it was terminated at."""
    hits: list[str] = []

    def wrapper(execute, sql, params, many, context):
        if not hits and match in sql and not after:
            hits.append(sql)
            _terminate(context["connection"].connection.info.backend_pid)
        result = execute(sql, params, many, context)
        if not hits and match in sql and after:
            hits.append(sql)
            _terminate(context["connection"].connection.info.backend_pid)
        return result

    with connection.execute_wrapper(wrapper):
        yield hits


def test_an_update_whose_connection_is_terminated_mid_transaction_is_run_again(api):
    product = services.product_create(title="t", price=Decimal("1.00"))
    with terminated_at("FOR UPDATE") as hits:
        r = api.patch(f"/api/products/{product.pk}/", {"title": "renamed"}, format="json")
    assert hits, "the connection was not terminated"
    assert r.status_code == 200, r.content
    product.refresh_from_db()
    assert (product.title, product.version) == ("renamed", 2)  # applied once
    assert OutboxEvent.objects.filter(product_id=product.pk).count() == 2


def test_a_create_whose_connection_is_terminated_mid_transaction_is_run_again(api):
    with terminated_at("products_outboxevent") as hits:
        r = api.post("/api/products/", {"title": "new", "price": "2.00"}, format="json")
    assert hits and r.status_code == 201, r.content
    assert Product.objects.filter(title="new").count() == 1  # not twice
    assert OutboxEvent.objects.count() == 1


def test_a_read_whose_connection_is_terminated_is_run_again(api):
    services.product_create(title="t", price=Decimal("1.00"))
    with terminated_at("FROM \"products_product\"") as hits:
        r = api.get("/api/products/")
    assert hits and r.status_code == 200 and r.json()["count"] == 1, r.content


def test_a_connection_lost_just_before_the_commit_is_run_again(api):
    """Terminated after the transaction's last statement: the COMMIT is never sent (the
    server rolls back), so the request runs once more and is applied once."""
    product = services.product_create(title="t", price=Decimal("1.00"))
    with terminated_at("products_outboxevent", after=True) as hits:
        r = api.patch(f"/api/products/{product.pk}/", {"title": "renamed"}, format="json")
    assert hits
    assert r.status_code == 200, r.content
    product.refresh_from_db()
    assert (product.title, product.version) == ("renamed", 2)
    assert OutboxEvent.objects.filter(product_id=product.pk).count() == 2


@pytest.fixture
def cut_proxy():
    """This process's database connection through a CommitCutProxy (a real TCP proxy)."""
    db = connection.settings_dict
    saved = db["HOST"], db["PORT"]
    with CommitCutProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))) as proxy:
        connection.close()
        db["HOST"], db["PORT"] = proxy.host, str(proxy.port)
        try:
            yield proxy
        finally:
            proxy.forward()
            connection.close()
            db["HOST"], db["PORT"] = saved


def test_an_update_whose_commit_answer_is_lost_is_answered_as_committed(api, cut_proxy):
    """The server commits, the answer never arrives (the connection is cut after the COMMIT
    went through): the server is asked what became of the transaction, says committed, and
    the client gets its 200, with the update applied once (not run again)."""
    product = services.product_create(title="t", price=Decimal("1.00"))
    cut_proxy.cut(delivered=True)
    r = api.patch(f"/api/products/{product.pk}/", {"title": "renamed"}, format="json")
    assert cut_proxy.cuts == 1
    assert r.status_code == 200, r.content
    assert (r.json()["title"], r.json()["version"]) == ("renamed", 2)
    product.refresh_from_db()
    assert (product.title, product.version) == ("renamed", 2)
    assert OutboxEvent.objects.filter(product_id=product.pk).count() == 2


def test_a_create_whose_commit_answer_is_lost_creates_one_product(api, cut_proxy):
    cut_proxy.cut(delivered=True)
    r = api.post("/api/products/", {"title": "new", "price": "2.00"}, format="json")
    assert cut_proxy.cuts == 1
    assert r.status_code == 201, r.content
    assert list(Product.objects.values_list("pk", "title")) == [(r.json()["id"], "new")]
    assert OutboxEvent.objects.count() == 1


def test_a_commit_that_never_reached_the_server_is_run_again(api, cut_proxy):
    product = services.product_create(title="t", price=Decimal("1.00"))
    cut_proxy.cut(delivered=False)
    r = api.patch(f"/api/products/{product.pk}/", {"title": "renamed"}, format="json")
    assert cut_proxy.cuts == 1
    assert r.status_code == 200, r.content
    product.refresh_from_db()
    assert (product.title, product.version) == ("renamed", 2)  # applied once
    assert OutboxEvent.objects.filter(product_id=product.pk).count() == 2


def test_a_commit_whose_outcome_nobody_can_tell_answers_503_with_retry_after(
        api, cut_proxy, monkeypatch):
    """The answer is lost and the server cannot be reached to ask: the outcome is unknown, so
    the request is not run again (it may have committed: here it did) and the answer is a
    503 with Retry-After, after at most ``LOST_COMMIT_WAIT`` seconds, never a 500."""
    monkeypatch.setattr(DatabaseWrapper, "LOST_COMMIT_WAIT", 1.0)
    product = services.product_create(title="t", price=Decimal("1.00"))
    cut_proxy.cut(delivered=True, refuse_after=True)
    r = api.patch(f"/api/products/{product.pk}/", {"title": "renamed"}, format="json")
    assert cut_proxy.cuts == 1
    assert r.status_code == 503 and r["Retry-After"], r.content
    assert "database is unavailable" in r.json()["detail"]
    cut_proxy.forward()
    product.refresh_from_db()
    assert product.version == 2  # it had committed: the client was told "unknown", not "no"
    assert OutboxEvent.objects.filter(product_id=product.pk).count() == 2


def test_a_lost_commit_s_resolution_is_bounded_when_the_server_black_holes(
        api, cut_proxy, monkeypatch):
    """Nothing answers after the cut (no refusal either): every wait of the resolution,
    reconnecting included, ends within ``LOST_COMMIT_WAIT`` in all, and Django does not try to
    reconnect on the way out: the 503 comes after ~1 s here, not after the answer deadline
    (45 s by default) once or twice more."""
    monkeypatch.setattr(DatabaseWrapper, "LOST_COMMIT_WAIT", 1.0)
    product = services.product_create(title="t", price=Decimal("1.00"))
    cut_proxy.cut(delivered=True, hole_after=True)
    t0 = time.monotonic()
    r = api.patch(f"/api/products/{product.pk}/", {"title": "renamed"}, format="json")
    took = time.monotonic() - t0
    assert cut_proxy.cuts == 1
    assert r.status_code == 503 and r["Retry-After"], r.content
    assert took < 5, took


@pytest.mark.parametrize("method", ["get", "patch"])
def test_a_database_that_stops_answering_gets_a_503_within_the_request_deadline(
        api, cut_proxy, settings, method):
    """A black hole under a request (no RST, no FIN: only a deadline notices): all of the
    request's database waits, its second run's included, end within
    ``WEB_DB_DEADLINE_SECONDS`` (here 1.5 s) together, and the client gets a 503 before
    gunicorn would kill the worker (``*_WEB_TIMEOUT_SECONDS``, 5 s later), however long each
    single wait may take (``*_DB_ANSWER_TIMEOUT_SECONDS``)."""
    settings.WEB_DB_DEADLINE_SECONDS = 1.5
    product = services.product_create(title="t", price=Decimal("1.00"))
    cut_proxy.blackhole()
    t0 = time.monotonic()
    if method == "get":
        r = api.get("/api/products/")
    else:
        r = api.patch(f"/api/products/{product.pk}/", {"title": "renamed"}, format="json")
    took = time.monotonic() - t0
    assert r.status_code == 503 and r["Retry-After"], r.content
    assert took < 4, took


def test_on_commit_hooks_run_when_a_lost_commit_turns_out_committed(cut_proxy):
    """The transaction's ``transaction.on_commit`` callbacks run once it is known committed
    (none of the project's writes has one today; Django empties them on a new connection)."""
    from django.db import transaction

    product = services.product_create(title="t", price=Decimal("1.00"))
    fired = []
    cut_proxy.cut(delivered=True)
    connection.resolve_lost_commits = True
    try:
        with transaction.atomic():
            services.product_update(product_id=product.pk, data={"title": "renamed"})
            transaction.on_commit(lambda: fired.append("hook"))
    finally:
        connection.resolve_lost_commits = False
    assert cut_proxy.cuts == 1
    assert fired == ["hook"]
    product.refresh_from_db()
    assert product.version == 2


def test_a_django_admin_change_whose_commit_answer_is_lost_succeeds(admin_user, cut_proxy):
    """Outside the API views too (the Django admin's change form): committed is committed."""
    from django.test import Client

    product = services.product_create(title="t", price=Decimal("1.00"))
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    page = client.get(f"/admin/products/product/{product.pk}/change/")
    assert page.status_code == 200
    form = {f.name: f.value() for f in page.context["adminform"].form}
    form = {k: ("" if v is None else v) for k, v in form.items()} | {"title": "renamed"}
    cut_proxy.cut(delivered=True)
    r = client.post(f"/admin/products/product/{product.pk}/change/", form)
    assert cut_proxy.cuts == 1
    assert r.status_code == 302, (r.status_code, r.content[:500])
    product.refresh_from_db()
    assert (product.title, product.version) == ("renamed", 2)
    assert OutboxEvent.objects.filter(product_id=product.pk).count() == 2


def test_a_database_that_stays_away_answers_503_not_500(api):
    services.product_create(title="t", price=Decimal("1.00"))
    pid_terminations = []

    def wrapper(execute, sql, params, many, context):  # every statement, every connection
        pid_terminations.append(sql)
        _terminate(context["connection"].connection.info.backend_pid)
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(wrapper):
            r = api.get("/api/products/")
    finally:
        connection.close()  # the test database's teardown needs a live one
    assert len(pid_terminations) >= 2  # the first run and the second
    assert r.status_code == 503 and r["Retry-After"] == "2", r.content


def test_a_statement_timeout_is_not_run_again(api):
    """Only a lost connection is worth a second run: a statement timeout (an OperationalError
    too) would only come again after the same wait. 503, after one run."""
    services.product_create(title="t", price=Decimal("1.00"))
    runs = []

    def wrapper(execute, sql, params, many, context):
        if 'FROM "products_product"' in sql:
            runs.append(sql)
            execute("SET statement_timeout = 50", None, False, context)
            execute("SELECT pg_sleep(2)", None, False, context)
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(wrapper):
            r = api.get("/api/products/")
    finally:
        connection.close()  # it keeps the 50 ms timeout otherwise
    assert len(runs) == 1, runs
    assert r.status_code == 503 and r["Retry-After"] == "2", r.content


def test_a_database_lost_outside_the_view_answers_503_not_500(admin_user):
    """The session saved by SessionMiddleware after a Django admin login: an error there never
    reaches a middleware's process_exception; handler500 answers 503 for it."""
    from django.test import Client

    client = Client(raise_request_exception=False)
    with terminated_at('UPDATE "django_session"') as hits:
        r = client.post("/admin/login/?next=/admin/",
                        {"username": admin_user.username, "password": "password"})
    connection.close()
    assert hits, "the session was not saved by the middleware"
    assert r.status_code == 503 and r["Retry-After"] == "2", (r.status_code, r.content[:300])
