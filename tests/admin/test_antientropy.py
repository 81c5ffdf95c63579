"""The anti-entropy check (admin_project/products/antientropy.py) against a test double of the
catalog's digest API (tests/admin/fake_catalog.py): it makes progress under the catalog's rate
limit and its busy answers, asks for fewer rows when a digest is too costly for either database,
stops within its time budget having repaired what it found (the next check goes on from there),
tells changes in flight from drift, bounds and batches its repairs, and takes the relays' lock
when run by hand. The real catalog: tests/e2e/test_antientropy.py."""

from __future__ import annotations

import io
import time
from datetime import timedelta
from decimal import Decimal

import psycopg2
import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from django.utils import timezone
from psycopg2.errors import QueryCanceled

from admin_project.outbox.models import OutboxEvent
from admin_project.products import antientropy, services
from admin_project.products.antientropy import products_antientropy_check
from admin_project.products.models import Product, ProductTombstone
from product_events import digest

from .fake_catalog import FakeCatalog

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog():
    fake = FakeCatalog()
    try:
        yield fake
    finally:
        fake.close()


def products(ids, version=1):
    """Products whose events were sent long ago (no outbox rows)."""
    Product.objects.bulk_create([Product(id=i, title=f"p{i}", price=Decimal("3.00"),
                                         version=version) for i in ids])


def check(catalog, **kwargs):
    kwargs.setdefault("grace", 600)
    return products_antientropy_check(catalog_url=catalog.url, **kwargs)


def test_the_python_row_hash_is_the_sql_one():
    """The test double's digests mean what the real ones mean."""
    sql = digest.row_hash_sql(id="%(id)s::bigint", version="%(version)s::int",
                              deleted="%(deleted)s", title="%(title)s::text",
                              image="%(image)s::text", price="%(price)s::numeric(12,2)",
                              description="%(description)s::text")
    cases = [dict(id=1, version=1, deleted=False, title="Blue mug", image="",
                  price="9.90", description="Holds coffee."),
             dict(id=2**63 - 1, version=7, deleted=False, title="a\x1fb", image="b\x1f",
                  price="0.00", description="ünïcødé ☕ 'quoted' %s"),
             dict(id=5, version=3, deleted=True, title="", image="", price="0.00",
                  description="")]
    for case in cases:
        with connection.cursor() as cur:
            cur.execute(f"SELECT {sql}", case)
            (expected,) = cur.fetchone()
        assert digest.row_hash(**case) == expected, case


def test_drift_of_every_kind_is_found_and_repaired(catalog):
    products(range(1, 11))
    services.product_delete(product_id=3)
    OutboxEvent.objects.all().delete()  # sent long ago
    catalog.copy_admin()
    catalog.rows.pop(1)                                              # missing
    catalog.rows[2] = (0, *catalog.rows[2][1:])                      # behind
    catalog.rows[3] = (1, False, "p3", "", "3.00", "")               # not deleted
    catalog.rows[4] = (1, False, "edited", "", "3.00", "")           # content
    catalog.rows[5] = (9, *catalog.rows[5][1:])                      # ahead
    catalog.rows[99] = (1, False, "x", "", "1.00", "")               # unknown
    found = check(catalog)
    assert (found.missing, found.behind, found.not_deleted, found.content, found.ahead,
            found.unknown) == ([1], [2], [3], [4], [5], [99])
    assert found.complete and found.repaired == 4 and found.in_flight == []
    assert Product.objects.get(pk=4).version == 2  # raised: a subscriber ignores the same one
    assert sorted(OutboxEvent.objects.values_list("product_id", "version")) == \
        [(1, 1), (2, 1), (3, 2), (4, 2)]  # nothing for 5 (ahead) or 99 (never here)


def test_a_catalog_restored_empty_is_repaired_under_the_default_throttle(catalog):
    """Found by an outsider: 130 products 600 ids apart, the catalog emptied, its default digest
    rate (120/minute): every check failed with 'catalog unreadable: 429' and repaired nothing.
    Where the catalog holds none of a range, no request is needed to know what it lacks."""
    ids = [1 + 600 * i for i in range(130)]
    products(ids)
    catalog.rate = (120, 60.0)
    found = check(catalog)
    assert found.complete and found.missing == ids and found.repaired == 130
    assert found.requests <= 3, catalog.requests


def test_a_throttled_catalog_is_waited_for_and_the_check_finishes(catalog):
    """429 and its Retry-After are honoured within the check's time budget."""
    ids = list(range(1, 3001))
    products(ids)
    catalog.copy_admin()
    edited = ids[7::150]  # 20 spread over every window
    for pid in edited:
        catalog.rows[pid] = (1, False, "edited", "", "3.00", "")
    catalog.rate = (2, 1.0)  # two requests a second
    found = check(catalog, max_rows=1000, max_seconds=120)
    assert found.complete and found.content == edited and found.repaired == len(edited)
    assert found.waited > 0 and any(status == 429 for *_, status in catalog.requests)


def test_a_busy_catalog_is_asked_again_after_its_retry_after(catalog):
    products(range(1, 50))
    catalog.copy_admin()
    catalog.busy = 2
    found = check(catalog)
    assert found.complete and found.drifted == 0 and found.waited >= 2


def test_the_budget_ends_a_check_with_its_findings_repaired_and_the_next_goes_on(catalog):
    """Each check used to start from scratch and repair only after the whole comparison: under
    a rate limit it never got there. Now what it found is repaired as it goes, and a check that
    runs out of time says where it stopped."""
    ids = list(range(1, 3001))
    products(ids)
    catalog.copy_admin()
    lost = ids[10::300]  # 10, spread over the three windows of 1,000 rows
    for pid in lost:
        catalog.rows.pop(pid)
    catalog.rate = (2, 600.0)  # the third request waits 10 minutes: past the budget
    t0 = time.monotonic()
    first = check(catalog, max_rows=1000, max_seconds=5)
    assert time.monotonic() - t0 < 60  # bounded, though the catalog asked for 10 minutes
    assert not first.complete and first.stopped_at is not None and first.stopped_at > 1
    assert first.missing and set(first.missing) < set(lost)
    assert first.repaired == len(first.missing)  # repaired, not thrown away
    assert "incomplete: stopped at id" in first.summary()

    catalog.rate = None
    second = check(catalog, max_rows=1000, start_at=first.stopped_at)
    assert second.complete and second.reached_end and second.start_at == first.stopped_at
    # the rest is repaired; what the first one repaired is on its way (pending), not drift
    assert sorted(second.missing) == sorted(set(lost) - set(first.missing))
    assert sorted(second.in_flight) == sorted(first.missing)
    assert sorted(OutboxEvent.objects.values_list("product_id", flat=True)) == sorted(lost)


def test_changes_in_flight_are_not_drift_and_are_not_republished(catalog):
    """Found by an outsider: with the worker stopped, 3000 new products (safe in the queue) were
    reported 'missing' and republished, doubling the outbox. A change pending in the outbox or
    sent within the grace is in flight: reported on its own, not repaired."""
    catalog.copy_admin()
    made = [services.product_create(title=f"n{i}", price=Decimal("1.00")).pk for i in range(30)]
    services.product_update(product_id=made[0], data={"title": "n0 v2"})
    catalog.rows[made[0]] = (1, False, "n0", "", "1.00", "")  # v2 not there yet
    events = OutboxEvent.objects.count()
    pending = check(catalog)
    assert pending.in_flight == made and pending.drifted == 0 and pending.repaired == 0
    assert "30 in flight (not repaired)" in pending.summary()
    OutboxEvent.objects.update(sent_at=timezone.now())  # sent: in the queue, not applied yet
    sent = check(catalog)
    assert sent.in_flight == made and sent.drifted == 0 and sent.repaired == 0
    assert OutboxEvent.objects.count() == events
    out = io.StringIO()
    call_command("antientropy", "--catalog-url", catalog.url, stdout=out)  # exit 0
    assert "in_flight" in out.getvalue()

    OutboxEvent.objects.update(sent_at=timezone.now() - timedelta(hours=2))  # long ago: lost
    lost = check(catalog)
    assert lost.missing == made[1:] and lost.behind == [made[0]] and lost.repaired == 30
    assert check(catalog, repair=False, grace=0).in_flight == made  # the repairs: pending


def test_repairs_are_bounded_per_check_written_in_batches_and_wait_for_a_backlog(catalog):
    products(range(1, 1201))
    found = check(catalog, max_repairs=1000)
    assert len(found.missing) == 1200 and found.repaired == 1000 and found.deferred == 200
    assert "200 left for the next check" in found.summary()
    # one transaction per 500: each batch has its own publishing time
    assert OutboxEvent.objects.values("occurred_at").distinct().count() == 2
    assert OutboxEvent.objects.count() == 1000
    # 1,000 pending: above max_pending nothing more is written, and the pending are in flight
    backlog = check(catalog, max_pending=500)
    assert len(backlog.in_flight) == 1000 and backlog.missing == list(range(1001, 1201))
    assert backlog.repaired == 0 and backlog.deferred == 200
    assert OutboxEvent.objects.count() == 1000


def test_a_digest_too_costly_for_the_catalog_is_asked_again_with_fewer_rows(catalog):
    """Found by an outsider: a digest that hit the catalog's statement timeout failed the check
    ('400 ask for a smaller range') instead of asking for a smaller one."""
    products(range(1, 5001))
    catalog.copy_admin()
    catalog.rows[4321] = (1, False, "edited", "", "3.00", "")
    catalog.too_costly_above = 1500
    found = check(catalog, max_rows=5000)
    assert found.complete and found.content == [4321] and found.smaller == 2  # 2,500, 1,250
    assert any(status == 400 for *_, status in catalog.requests)


def test_a_digest_too_costly_for_the_admin_database_is_split_too(catalog, monkeypatch):
    products(range(1, 5001))
    catalog.copy_admin()
    catalog.rows.pop(77)
    real = antientropy._local_parts

    def bounded(start, end, parts):
        if Product.objects.filter(pk__gte=start, pk__lt=end).count() > 1500:
            try:
                raise QueryCanceled("canceling statement due to statement timeout")
            except QueryCanceled as exc:
                raise OperationalError(str(exc)) from exc
        return real(start, end, parts)

    monkeypatch.setattr(antientropy, "_local_parts", bounded)
    found = check(catalog, max_rows=5000)
    assert found.complete and found.missing == [77] and found.smaller == 2


def _hold_lock():
    db = connection.settings_dict
    other = psycopg2.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"],
                             port=db["PORT"], password=db["PASSWORD"] or None)
    with other.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", [antientropy.LOCK_KEY])
    return other


@pytest.mark.parametrize("command", ["antientropy", "reconcile"])
def test_checks_by_hand_take_the_relays_lock_and_say_so_when_it_is_held(catalog, command):
    """Found by an outsider: only the relays took the lock, so a monitor's `reconcile` and a
    relay's check ran at once. Now a command waits --wait seconds for it, then exits 3."""
    products(range(1, 10))
    catalog.copy_admin()
    other = _hold_lock()
    try:
        err = io.StringIO()
        t0 = time.monotonic()
        with pytest.raises(SystemExit) as exit_:
            call_command(command, "--catalog-url", catalog.url, "--wait", "1", stderr=err,
                         stdout=io.StringIO())
        assert exit_.value.code == 3 and time.monotonic() - t0 < 30
        assert "another anti-entropy check" in err.getvalue() and catalog.requests == []
    finally:
        other.close()
    call_command(command, "--catalog-url", catalog.url, stdout=io.StringIO())  # free: exit 0
    assert catalog.requests


def test_reconcile_exit_codes_no_verdict_when_the_budget_runs_out(catalog):
    products(range(1, 3001))
    catalog.copy_admin()
    catalog.rows[5] = (1, False, "edited", "", "3.00", "")  # its rows must be read: 2 requests
    catalog.rate = (1, 600.0)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("reconcile", "--catalog-url", catalog.url, "--max-seconds", "2",
                     stdout=out)
    assert exit_.value.code == 3 and "incomplete: stopped at id" in out.getvalue()


def test_the_relay_exports_its_check_metrics_also_when_checks_are_off():
    """Found by an outsider: with ADMIN_RECONCILE_EVERY_SECONDS=0 no antientropy_* series
    existed, so AntiEntropyNotRunning could never fire."""
    from prometheus_client import REGISTRY

    antientropy.antientropy_metrics(every=0)
    assert REGISTRY.get_sample_value("antientropy_enabled") == 0
    assert REGISTRY.get_sample_value("antientropy_interval_seconds") == 0
    antientropy.antientropy_metrics(every=300)
    assert REGISTRY.get_sample_value("antientropy_enabled") == 1
    assert REGISTRY.get_sample_value("antientropy_last_success_timestamp_seconds") is not None


def test_tombstones_count_as_rows_of_the_admins_windows(catalog):
    products(range(1, 2001))
    for pid in range(1, 2001, 2):
        Product.objects.filter(pk=pid).delete()
        ProductTombstone.objects.create(product_id=pid, version=2, data={},
                                        deleted_at=timezone.now())
    catalog.copy_admin()
    catalog.rows[1999] = (1, False, "p1999", "", "3.00", "")
    found = check(catalog, max_rows=1000, repair=False)
    assert found.complete and found.not_deleted == [1999] and found.compared == 2000
    assert len(catalog.digests("")) >= 2  # two windows of at most 1,000 rows each


@pytest.mark.parametrize("command", ["reconcile", "antientropy"])
def test_an_unreadable_admin_database_is_one_line_and_exit_4(command, tmp_path):
    """Found by an outsider: with the admin database unreachable both commands printed a
    94-line traceback and exited 1, the code that means drift."""
    import subprocess
    import sys

    from harness import processes

    env = processes.base_env(ADMIN_DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere",
                             ADMIN_DB_CONNECT_TIMEOUT_SECONDS="2",
                             CATALOG_URL="http://127.0.0.1:1")
    out = subprocess.run([sys.executable, "admin_project/manage.py", command, "--wait", "2"],
                         env=env, cwd=processes.REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 4, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith(f"{command}: admin database unreadable: OperationalError")


def test_a_catalog_whose_database_is_down_is_unreadable_at_once_not_waited_for(catalog):
    """The catalog answers 503 while its database is unavailable (its busy answer is 429): the
    third in a row makes it unreadable (exit 2, ``catalog_unavailable``) instead of a check
    that waits out its whole budget and counts as a success having compared nothing."""
    products(range(1, 50))
    catalog.copy_admin()
    catalog.busy = 1000
    started = time.monotonic()
    with pytest.raises(antientropy.CatalogUnavailable, match="503 3 times in a row"):
        check(catalog, max_seconds=120)
    assert time.monotonic() - started < 30
    assert sum(1 for *_, status in catalog.requests if status == 503) == 3


@pytest.mark.parametrize("path", ["", "rows/"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), -float("inf"), "12", None, [1],
                                   {"a": 1}, 2.5, 10**40, True])
def test_any_malformed_catalog_answer_is_unreadable_not_a_crash(catalog, monkeypatch, path,
                                                                value):
    """Every field of both answers replaced by values of the wrong kind (Infinity and NaN are
    what Python's json writes and reads for floats it cannot represent): CatalogUnavailable,
    never another exception (which the commands would report as drift, exit 1)."""
    products(range(1, 50))
    catalog.copy_admin()
    catalog.rows[7] = (1, False, "edited", "", "3.00", "")  # the check reads rows there
    real = catalog.answer

    def answer(p, q):
        status, headers, body = real(p, q)
        if p == path and status == 200:
            for key in list(body):
                body = body | {key: value}
                if key in ("parts", "rows"):
                    body = body | {key: [value]}
        return status, headers, body

    monkeypatch.setattr(catalog, "answer", answer)
    try:
        check(catalog)
    except antientropy.CatalogUnavailable:
        pass  # what the commands report in one line, exit 2


def test_an_event_sent_twice_that_never_lands_is_not_republished_by_the_relays_checks(catalog):
    """A parked event (a value the catalog refuses) is missing at every check: republished at
    each one, it was parked again each time and the DLQ grew without end. The relay's checks
    republish an event at most until it was sent twice, then report it (``not_landing``); a
    person's ``reconcile --repair`` republishes it whatever was sent before."""
    products(range(1, 4))
    catalog.copy_admin()
    catalog.rows.pop(2)

    def sent_long_ago():
        OutboxEvent.objects.update(sent_at=timezone.now() - timedelta(hours=2))

    first = check(catalog, again=False)  # no outbox row for it (sent long ago, purged)
    assert first.missing == [2] and first.repaired == 1 and first.not_landing == []
    sent_long_ago()
    second = check(catalog, again=False)  # sent once: once more
    assert second.missing == [2] and second.repaired == 1 and second.not_landing == []
    sent_long_ago()
    third = check(catalog, again=False)   # sent twice and still not there: reported
    assert third.missing == [2] and third.repaired == 0 and third.not_landing == [2]
    assert "1 not republished again (sent twice already" in third.summary()
    assert OutboxEvent.objects.count() == 2
    assert check(catalog).repaired == 1   # a person asked (the commands' default)
