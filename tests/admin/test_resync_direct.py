"""Resync publishing straight to the broker (its default), against the real RabbitMQ (this
session's own vhost): the wire format is the relay's, every product and deletion arrives once
and in id order, nothing goes through the outbox while the broker takes it, and what it does not
take (a broker that fails, stops answering or refuses a size) goes through the outbox: never
lost, never a hang."""

import json
import time
import uuid
from collections import defaultdict

import pytest
from celery import Celery
from django.conf import settings as django_settings
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu import Exchange, Queue

from admin_project.outbox import publish
from admin_project.outbox.models import OutboxEvent
from admin_project.products import resync, services
from admin_project.products.models import Product, ProductTombstone, ResyncCheckpoint
from harness import amqp
from harness.blackhole import BlackholeProxy
from product_events import contract

from .conftest import exchange_declare
from .test_resync import interrupted_after_two_batches, make

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def received(queue):
    """(message, [events]) of every message in ``queue``, in arrival order."""
    return [(m, json.loads(m.body)[1]["events"]) for m in amqp.drain(queue)]


def events_of(messages):
    return [(e["type"], e["product_id"], e["version"]) for _m, evs in messages for e in evs]


def publisher_via(url):
    app = Celery("resync-test")
    app.conf.broker_write_url = url  # (CELERY_BROKER_URL in the environment wins over broker_url)
    app.conf.broker_transport_options = dict(django_settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    app.conf.broker_heartbeat = 0
    return publish.Publisher(app)


def test_resync_publishes_every_product_and_deletion_in_the_relays_format(bus_queue):
    ids = make(5)
    services.product_update(product_id=ids[1], data={"title": "v2"})
    services.product_delete(product_id=ids[2])
    OutboxEvent.objects.all().delete()
    calls = []
    assert resync.products_resync(batch_size=2, rate=None, max_pending=0,
                                  progress=calls.append) == 5
    assert OutboxEvent.objects.count() == 0  # nothing written for the relay
    messages = received(bus_queue)
    assert sorted(events_of(messages), key=lambda e: e[1]) == [
        ("product.created", ids[0], 1), ("product.updated", ids[1], 2),
        ("product.deleted", ids[2], 2), ("product.created", ids[3], 1),
        ("product.created", ids[4], 1)]
    for msg, evs in messages:
        assert msg.delivery_info["routing_key"] == evs[0]["type"]
        assert {e["type"] for e in evs} == {evs[0]["type"]}  # one type per message
        assert msg.content_type == contract.CONTENT_TYPE
        assert msg.properties["delivery_mode"] == 2
        assert msg.properties["correlation_id"] == msg.headers["id"]
        assert msg.headers["task"] == contract.TASK_APPLY_PRODUCT_EVENTS
        assert msg.headers["origin"] == resync.ORIGIN
        assert msg.headers["kwargsrepr"] == contract.task_summary(evs)
        for event in evs:
            contract.envelope_validate(event)
            assert event["event_id"] == contract.event_id_for(event["type"],
                                                              event["product_id"],
                                                              event["version"])
    assert ResyncCheckpoint.objects.get().finished
    assert all("published" in c for c in calls)


def test_messages_match_the_relays_for_the_same_events(bus_queue):
    """The same events sent by the relay (outbox) and by resync (direct) make messages that
    differ only in their task id, origin and the envelopes' occurred_at."""
    make(3)
    assert publish.outbox_publish_pending() == 3
    (relayed,) = received(bus_queue)
    resync.products_resync(batch_size=10, max_pending=0, restart=True)
    (direct,) = received(bus_queue)

    def shape(message):
        msg, evs = message
        headers = {k: v for k, v in msg.headers.items()
                   if k not in ("id", "root_id", "origin")}
        props = {k: v for k, v in msg.properties.items()
                 if k not in ("correlation_id", "application_headers")}
        return (headers, props, msg.delivery_info["routing_key"],
                [{k: v for k, v in e.items() if k not in ("occurred_at", "trace_id")}
                 for e in evs])

    assert shape(relayed) == shape(direct)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(live=st.integers(0, 25), deleted=st.integers(0, 10), batch_size=st.integers(1, 12),
       per_message=st.integers(1, 7))
def test_each_event_once_in_id_order_within_the_limits(bus_queue, live, deleted, batch_size,
                                                       per_message):
    OutboxEvent.objects.all().delete()
    ProductTombstone.objects.all().delete()
    Product.objects.all().delete()
    amqp.drain(bus_queue)
    ids = make(live + deleted)
    for pid in ids[::2][:deleted]:
        services.product_delete(product_id=pid)
    OutboxEvent.objects.all().delete()
    with override_settings(RELAY_MAX_EVENTS_PER_MESSAGE=per_message):
        n = resync.products_resync(batch_size=batch_size, rate=None, max_pending=0,
                                   restart=True)
    messages = received(bus_queue)
    got = events_of(messages)
    assert n == len(ids) == len(got)
    assert sorted(pid for _t, pid, _v in got) == sorted(ids)  # each once
    for kind in contract.EVENT_TYPES:  # in id order (messages carry one type each)
        of_kind = [pid for t, pid, _v in got if t == kind]
        assert of_kind == sorted(of_kind)
    assert all(1 <= len(evs) <= per_message for _m, evs in messages)
    assert OutboxEvent.objects.count() == 0


def test_an_unreachable_broker_sends_everything_through_the_outbox(bus_queue):
    ids = make(4)
    OutboxEvent.objects.all().delete()
    publisher = publisher_via("amqp://guest:guest@127.0.0.1:1//")  # nothing listens there
    calls = []
    assert resync.products_resync(batch_size=3, max_pending=0, publisher=publisher,
                                  progress=calls.append) == 4
    assert sorted(OutboxEvent.objects.values_list("product_id", flat=True)) == ids
    assert any("go through the outbox" in c for c in calls)
    assert amqp.drain(bus_queue) == []


def test_a_broker_that_stops_answering_mid_run_loses_nothing_and_waits_bounded(bus_queue,
                                                                              settings):
    """Black-holed after the first batch (no RST, no FIN): the second batch's confirms never
    come; after RELAY_CONFIRM_TIMEOUT that batch and the rest go through the outbox."""
    settings.RELAY_CONFIRM_TIMEOUT = 1.0
    ids = make(7)
    OutboxEvent.objects.all().delete()
    host, port = "127.0.0.1", 5672
    url = django_settings.CELERY_BROKER_URL
    with BlackholeProxy((host, port)) as proxy:
        scheme, rest = url.split("://", 1)
        creds, vhost = rest.split("@", 1)[0], rest.split("/", 1)[1]
        publisher = publisher_via(f"{scheme}://{creds}@{proxy.host}:{proxy.port}/{vhost}")
        calls = []

        def progress(msg):
            calls.append(msg)
            if len(calls) == 1:
                proxy.blackhole()

        started = time.monotonic()
        try:
            assert resync.products_resync(batch_size=3, max_pending=0, publisher=publisher,
                                          progress=progress) == 7
        finally:
            publisher.close()
        took = time.monotonic() - started
    assert took < 6, took  # one confirm timeout (1 s), not a hang: 21 s before reset dropped
    # the connection without the closing handshake
    published = {e[1] for e in events_of(received(bus_queue))}
    recorded = set(OutboxEvent.objects.values_list("product_id", flat=True))
    assert published | recorded == set(ids)  # nothing lost
    assert published == set(ids[:3])  # the first batch, confirmed before the black hole
    assert recorded == set(ids[3:])
    assert any("did not confirm 1 messages within 1.0 s" in c for c in calls), calls


def test_messages_confirmed_before_a_refusal_count_as_sent(settings):
    """A queue that takes two messages and refuses the rest (basic.nack): the two confirmed
    messages are sent, the refused ones and the rest of the run go through the outbox, and
    nothing confirmed is sent twice."""
    exchange_declare()
    settings.RELAY_MAX_EVENTS_PER_MESSAGE = 1
    full = f"full-{uuid.uuid4().hex[:8]}"
    with amqp.broker_connection() as conn:
        Queue(full, Exchange(contract.EXCHANGE, contract.EXCHANGE_TYPE, passive=True),
              routing_key=contract.ROUTING_PATTERN_ALL,
              queue_arguments={"x-max-length": 2, "x-overflow": "reject-publish"})(
            conn.default_channel).declare()
    try:
        ids = make(9)
        OutboxEvent.objects.all().delete()
        calls = []
        assert resync.products_resync(batch_size=6, max_pending=0, progress=calls.append) == 9
        assert [e[1] for e in events_of(received(full))] == ids[:2]
    finally:
        amqp.queue_delete(full)
    assert sorted(OutboxEvent.objects.values_list("product_id", flat=True)) == ids[2:]
    assert "MessageNacked" in calls[0] and "this batch 2 published, 4 into the outbox" in calls[1]
    assert calls[2].endswith("this batch into the outbox)")


def test_says_it_waits_for_the_relay_when_the_broker_is_down(bus_queue):
    """With the broker down every batch goes into the outbox; at --max-pending resync waits for
    the relay (it must not bury live changes) and says so, rather than wait silently."""
    ids = make(12)
    OutboxEvent.objects.all().delete()
    publisher = publisher_via("amqp://guest:guest@127.0.0.1:1//")
    calls, sleeps = [], []

    def relay_back_later(seconds):
        sleeps.append(seconds)
        if len(sleeps) % 3 == 0:  # the broker is back and the relay sends what waits
            OutboxEvent.objects.update(sent_at=timezone.now())

    assert resync.products_resync(batch_size=3, max_pending=4, publisher=publisher,
                                  sleep=relay_back_later, progress=calls.append) == 12
    waiting = [c for c in calls if c.startswith("waiting for the relay: ")]
    assert waiting and "events pending in the outbox (--max-pending 4, a batch 3)" in waiting[0]
    assert sorted(OutboxEvent.objects.values_list("product_id", flat=True)) == ids


def test_an_event_too_large_for_a_message_goes_to_the_relay_to_be_set_aside(bus_queue, settings):
    ids = make(3)
    services.product_update(product_id=ids[1], data={"description": "x" * 5000})
    OutboxEvent.objects.all().delete()
    settings.RELAY_MAX_MESSAGE_BYTES = 3000
    assert resync.products_resync(batch_size=10, max_pending=0) == 3
    assert {e[1] for e in events_of(received(bus_queue))} == {ids[0], ids[2]}
    (row,) = OutboxEvent.objects.all()
    assert row.product_id == ids[1]
    assert publish.outbox_publish_cycle().set_aside == 1  # the relay gives it its reason
    row.refresh_from_db()
    assert "too large" in row.set_aside_reason


def test_resumes_after_an_interruption_without_sending_a_batch_twice(bus_queue):
    make(6)
    OutboxEvent.objects.all().delete()
    calls = interrupted_after_two_batches(batch_size=2, max_pending=0)
    assert len(events_of(received(bus_queue))) == 4
    assert resync.products_resync(batch_size=2, max_pending=0, progress=calls.append) == 2
    assert len(events_of(received(bus_queue))) == 2  # nothing twice, nothing skipped


def test_waits_while_live_changes_pile_up_in_the_outbox(bus_queue):
    make(10)  # their events are pending: the relay is not running
    waits = []

    def relay_catches_up(seconds):
        waits.append(seconds)
        OutboxEvent.objects.update(sent_at=timezone.now())

    assert resync.products_resync(batch_size=5, max_pending=12, restart=True,
                                  sleep=relay_catches_up) == 10
    assert waits  # 10 pending + a batch of 5 > 12: it waited for the relay first
    assert len(events_of(received(bus_queue))) == 10


def test_confirms_are_counted_in_the_order_they_settle():
    """Acks and nacks by delivery tag, single or ``multiple``, a nack overtaking earlier acks
    (a quorum queue acks after its log write, a full queue nacks at once)."""

    class Channel:
        events = defaultdict(set)

    confirms = publish._Confirms(Channel())
    confirms.sent = 6
    confirms._nack(3, False)
    assert (confirms.settled, confirms.confirmed, confirms.nacked) == (0, 0, False)
    confirms._ack(2, True)  # 1 and 2 acked; 3 was nacked before
    assert (confirms.settled, confirms.confirmed, confirms.nacked) == (3, 2, True)
    confirms._ack(5, False)
    assert confirms.settled == 3
    confirms._ack(4, False)
    confirms._ack(6, True)
    assert (confirms.settled, confirms.confirmed) == (6, 2)  # the first two only, in order

    fresh = publish._Confirms(Channel())
    fresh.sent = 3
    for tag in (3, 1, 2):
        fresh._ack(tag, False)
    assert (fresh.settled, fresh.confirmed, fresh.nacked) == (3, 3, False)
