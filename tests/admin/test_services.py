"""Product services: atomic change + event, versions, locking."""

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from admin_project.outbox.models import OutboxEvent
from admin_project.products import services
from admin_project.products.models import Product, ProductTombstone
from product_events.contract import envelope_validate


@pytest.mark.django_db
def test_event_is_rolled_back_with_the_change():
    with pytest.raises(RuntimeError), transaction.atomic():
        services.product_create(title="x", price=Decimal("1.00"))
        raise RuntimeError("boom")
    assert not Product.objects.exists() and not OutboxEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_record_outside_a_transaction_is_refused():
    product = services.product_create(title="x", price=Decimal("1.00"))
    assert not connection.in_atomic_block
    with pytest.raises(RuntimeError, match="inside the change's transaction"):
        services.product_event_record(product=product, event_type="product.updated")
    assert OutboxEvent.objects.count() == 1


@pytest.mark.django_db
def test_update_refuses_unknown_fields():
    product = services.product_create(title="x", price=Decimal("1.00"))
    with pytest.raises(ValueError):
        services.product_update(product_id=product.pk, data={"version": 5})


@pytest.mark.django_db(transaction=True)
def test_concurrent_updates_get_distinct_increasing_versions():
    product = services.product_create(title="x", price=Decimal("1.00"))
    n = 8
    barrier = threading.Barrier(n)
    errors = []

    def worker(i):
        try:
            barrier.wait()
            services.product_update(product_id=product.pk, data={"title": f"t{i}"})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    versions = sorted(OutboxEvent.objects.filter(type="product.updated")
                      .values_list("version", flat=True))
    assert versions == list(range(2, n + 2))
    product.refresh_from_db()
    assert product.version == n + 1
    last = OutboxEvent.objects.get(version=n + 1)
    assert last.payload["data"]["title"] == product.title


@pytest.mark.django_db
def test_version_raise_records_an_update_above_the_given_version():
    product = services.product_create(title="x", price=Decimal("1.00"))
    services.product_version_raise(product_id=product.pk, version=7)
    product.refresh_from_db()
    assert product.version == 7 and product.title == "x"
    last = OutboxEvent.objects.order_by("id").last()
    assert (last.type, last.product_id, last.version) == ("product.updated", product.pk, 7)
    assert last.payload["data"]["version"] == 7
    with pytest.raises(ValueError):
        services.product_version_raise(product_id=product.pk, version=7)


@pytest.mark.django_db
def test_deletion_record_for_a_product_without_a_row():
    data = {"title": "seen by the catalog", "image": "", "price": "3.00", "description": ""}
    services.product_deletion_record(product_id=41, version=4, data=data)
    tombstone = ProductTombstone.objects.get(product_id=41)
    assert tombstone.version == 4 and tombstone.data["title"] == "seen by the catalog"
    event = OutboxEvent.objects.get(product_id=41)
    assert (event.type, event.version) == ("product.deleted", 4)
    envelope_validate(event.payload)  # a valid event for every subscriber
    with pytest.raises(ValueError):  # not at or below the version it has
        services.product_deletion_record(product_id=41, version=4, data=data)
    product = services.product_create(title="x", price=Decimal("1.00"))
    with pytest.raises(ValueError):  # a product with a row is deleted by product_delete
        services.product_deletion_record(product_id=product.pk, version=9, data=data)


@pytest.mark.django_db(transaction=True)
def test_writes_validate_the_description_without_a_query_of_their_own():
    """The description's length is checked by the field's validator, not by Django querying the
    database's constraint (SAVEPOINT, SELECT, RELEASE on every create and update)."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as created:
        product = services.product_create(title="x", price=Decimal("1.00"), description="d")
    with CaptureQueriesContext(connection) as updated:
        services.product_update(product_id=product.pk, data={"description": "e" * 10_000})
    for queries in (created, updated):
        sql = [q["sql"] for q in queries.captured_queries]
        assert not any("SAVEPOINT" in s or "_check" in s for s in sql), sql
    assert len(created.captured_queries) == 4  # BEGIN, the product, its event, COMMIT


@pytest.mark.django_db
@pytest.mark.parametrize("write", ["create", "update"])
def test_a_description_too_long_is_a_field_error_and_writes_nothing(write):
    from django.core.exceptions import ValidationError

    product = services.product_create(title="x", price=Decimal("1.00"))
    before = OutboxEvent.objects.count()
    with pytest.raises(ValidationError) as refused:
        if write == "create":
            services.product_create(title="y", price=Decimal("1.00"), description="d" * 10_001)
        else:
            services.product_update(product_id=product.pk, data={"description": "d" * 10_001})
    assert list(refused.value.message_dict) == ["description"]
    assert Product.objects.count() == 1 and OutboxEvent.objects.count() == before
    product.refresh_from_db()
    assert product.version == 1 and product.description == ""
