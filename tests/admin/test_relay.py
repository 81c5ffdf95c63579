"""The outbox relay against the real RabbitMQ (this session's own vhost)."""

import json
import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from celery import Celery
from django.db import connection, connections, transaction
from django.utils import timezone

from admin_project.celery_app import app as celery_app
from admin_project.outbox import listen, loop, publish, record
from admin_project.outbox.models import OutboxEvent
from admin_project.products import services
from harness import amqp
from harness.waiting import wait_until
from product_events import contract

from .conftest import exchange_declare

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def make_products(n, **kw):
    return [services.product_create(title=f"p{i}", price=Decimal("1.00"), **kw) for i in range(n)]


def pending():
    return OutboxEvent.objects.filter(sent_at__isnull=True).count()


def test_publishes_documented_wire_format_and_marks_sent(bus_queue):
    (product,) = make_products(1)
    services.product_update(product_id=product.pk, data={"title": "new"})
    assert publish.outbox_publish_pending() == 2
    assert pending() == 0
    messages = amqp.drain(bus_queue)
    assert len(messages) == 2  # created and updated: one message per event type
    by_key = {m.delivery_info["routing_key"]: m for m in messages}
    assert set(by_key) == {"product.created", "product.updated"}
    msg = by_key["product.updated"]
    assert msg.content_type == "application/json"
    assert msg.properties["delivery_mode"] == 2  # persistent
    assert msg.headers["task"] == contract.TASK_APPLY_PRODUCT_EVENTS
    assert msg.headers["lang"] == "py"
    body = json.loads(msg.body)
    args, kwargs, _embed = body
    assert args == [] and list(kwargs) == ["events"]
    (event,) = kwargs["events"]
    assert contract.envelope_validate(event).version == 2
    # the event id names the change; the task id names this message (a new UUID 4)
    assert event["event_id"] == contract.event_id_for("product.updated", event["product_id"], 2)
    assert msg.headers["id"] != event["event_id"] and uuid.UUID(msg.headers["id"]).version == 4
    assert "product.updated" in msg.headers["kwargsrepr"]


def test_batches_events_of_one_type_per_message(bus_queue, settings):
    make_products(250)
    assert publish.outbox_publish_pending(max_events_per_message=100) == 250
    messages = amqp.drain(bus_queue)
    sizes = sorted(len(json.loads(m.body)[1]["events"]) for m in messages)
    assert sizes == [50, 100, 100]
    ids = [e["product_id"] for m in messages for e in json.loads(m.body)[1]["events"]]
    assert len(set(ids)) == 250


def test_unroutable_event_is_an_error_not_a_drop():
    """No queue bound for product events: mandatory publish fails, rows stay pending."""
    exchange_declare()
    make_products(2)
    with pytest.raises(Exception, match="(?i)no.?route|unroutable|312"):
        publish.outbox_publish_pending()
    assert pending() == 2


def test_broker_unreachable_leaves_rows_pending():
    down = Celery("down", set_as_current=False)
    down.conf.broker_url = "amqp://guest:guest@127.0.0.1:1//"
    down.conf.broker_transport_options = {"confirm_publish": True, "connect_timeout": 1}
    down.conf.broker_connection_max_retries = 0
    make_products(3)
    with pytest.raises(Exception):  # noqa: B017 - any connection error
        publish.outbox_publish_pending(app=down)
    assert pending() == 3


def test_rows_locked_by_another_relay_are_skipped(bus_queue):
    first, second = make_products(2)
    locked = threading.Event()
    release = threading.Event()

    def other_relay():
        with transaction.atomic():
            list(OutboxEvent.objects.select_for_update().filter(product_id=first.pk))
            locked.set()
            release.wait(10)
        connection.close()

    t = threading.Thread(target=other_relay)
    t.start()
    try:
        assert locked.wait(10)
        assert publish.outbox_publish_pending() == 1  # only the unlocked row
        assert OutboxEvent.objects.get(product_id=second.pk).sent_at is not None
        assert OutboxEvent.objects.get(product_id=first.pk).sent_at is None
    finally:
        release.set()
        t.join()
    assert publish.outbox_publish_pending() == 1
    assert pending() == 0


def test_listener_wakes_on_commit_only():
    listener = listen.OutboxListener()
    try:
        assert listener.wait(0.01) is False  # connects and LISTENs
        with pytest.raises(RuntimeError), transaction.atomic():
            services.product_create(title="rolled back", price=Decimal("1"))
            raise RuntimeError
        assert listener.wait(0.3) is False
        services.product_create(title="committed", price=Decimal("1"))
        assert listener.wait(5) is True
    finally:
        listener.close()


def test_relay_loop_publishes_soon_after_commit(bus_queue):
    r = loop.Relay(sweep_seconds=30)  # a long sweep: only the NOTIFY can wake it in time
    t = threading.Thread(target=r.run_forever)
    t.start()
    try:
        assert r.ready.wait(10), "relay did not start"
        make_products(1)
        wait_until(lambda: pending() == 0, timeout=5, message="relay to publish")
    finally:
        r.stop()
        t.join(10)
        for conn in connections.all():
            conn.close()
    assert not t.is_alive()
    assert len(amqp.drain(bus_queue)) == 1


def test_sent_rows_are_purged_after_retention(bus_queue):
    make_products(3)
    publish.outbox_publish_pending()
    OutboxEvent.objects.filter(product_id__in=OutboxEvent.objects.values("product_id")[:2]) \
        .update(sent_at=timezone.now() - timedelta(days=30))
    services.product_create(title="pending", price=Decimal("1"))
    assert record.outbox_purge_sent(older_than=timedelta(days=7)) == 2
    assert OutboxEvent.objects.count() == 2 and pending() == 1


def test_publisher_never_declares_queues(bus_queue):
    """Only consumers own queues; in particular no stray `celery` queue appears."""
    make_products(1)
    publish.outbox_publish_pending(app=celery_app)
    with pytest.raises(Exception, match="(?i)not.?found|404"):
        amqp.queue_depth("celery")

