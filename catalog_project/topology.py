"""Broker topology of the catalog project's subscribers of the product bus, declared in one place.

Each subscriber's queues are its own (not part of the wire contract, ``product_events``, which
holds only what every producer and consumer needs). The workers (workers/) declare them; the
catalog's Django code reads them (``manage.py dlq``, queue depths on ``/metrics``). Plain kombu
entities: importing this needs neither Django nor Celery.

Every subscriber (the catalog; the audit log, docs/extending.md) gets the same shape:

    products (topic, owned by the publisher)
        --<pattern>-->  <name>.products  (quorum queue, delivery limit, dead-lettering)
    <name> (topic, private to the subscriber: its retries and replays go here, not to the
            bus, so other subscribers never see them)
        --<name>.products-->  <name>.products
        --#.<name>.products-->  <name>.products  (retries with a countdown, after their delay)
    <name>_celery_delayed_27 ... _0, <name>_celery_delayed_delivery (the subscriber's own
            copy of Celery's native delayed delivery, kombu's layout with a prefix: retries
            wait there, and no other subscriber can read, purge or reroute them)
        <name>_celery_delayed_delivery --#.<name>.products-->  <name>
    <name>.dlx (direct)
        --<name>.products.dlq-->  <name>.products.dlq  (quorum queue: parked messages)

Each subscriber has its own queue, so each gets every event it binds for, at its own pace; a slow
or stopped one only lets its own queue grow.

Queue arguments are part of the contract with the broker: RabbitMQ refuses to redeclare a queue
with different arguments (406 PRECONDITION_FAILED). ``Subscription.declare`` turns that into an
actionable message.
"""

from __future__ import annotations

import re

from amqp.exceptions import PreconditionFailed
from kombu import Exchange, Queue, binding
from kombu.transport.native_delayed_delivery import (
    calculate_routing_key,
    declare_native_delayed_delivery_exchanges_and_queues,
    level_name,
)

from product_events import contract
from product_events.broker import PRODUCTS_EXCHANGE, exchange_ensure

# Deliveries before the broker dead-letters a message. On RabbitMQ 3.10 every return counts,
# also the prefetched messages a consumer held when its channel closed (a worker restart, a lost
# connection): with 10, ten restarts dead-lettered valid events (tests/faults, "worker
# disconnects"). High enough that only real poison (a message that kills its worker, again and
# again, which no worker survives to count) reaches it; a message that kills its pool process
# is parked by the worker itself after 3 runs (workers/handling.py, WORKER_LOST_LIMIT).
# Changing it changes the queue's arguments: `topology upgrade`.
DELIVERY_LIMIT = 100

products_exchange = PRODUCTS_EXCHANGE  # shared, declared by its owner (product_events/broker.py)


class TopologyMismatch(Exception):
    """RabbitMQ refused a queue: it exists with other arguments. The message says how to fix it
    (a worker that meets this stops: workers/consumer.py)."""


class Subscription:
    """The queues and exchanges of one subscriber ``name``, bound to the bus with ``pattern``
    (a topic pattern over event types: ``product.#``, ``product.deleted``, ...)."""

    def __init__(self, name: str, pattern: str = contract.ROUTING_PATTERN_ALL) -> None:
        self.name = name
        self.queue_name = f"{name}.products"
        self.dlq_name = f"{self.queue_name}.dlq"
        # Exists only while `manage.py topology upgrade` replaces the queue: bound like it, it
        # holds the subscriber's events meanwhile (catalog_project/catalog/queues.py).
        self.holding_queue_name = f"{self.queue_name}.upgrade"
        self.exchange = Exchange(name, "topic", durable=True)
        # Retries wait in this subscriber's own delay queues (see the module docstring).
        self.delay_prefix = name
        self.delay_entry = Exchange(level_name(27, name), "topic", durable=True)
        self.delay_delivery_exchange = f"{name}_celery_delayed_delivery"
        self.dead_letter_exchange = Exchange(f"{name}.dlx", "direct", durable=True)
        self.queue_arguments = {
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": self.dead_letter_exchange.name,
            "x-dead-letter-routing-key": self.dlq_name,
            # at-least-once dead-lettering: a message is only removed once the DLQ confirmed it
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        # The queue as Celery sees it: its exchange/routing key is the private one, so retries
        # (native delayed delivery on quorum queues) come back to this queue only.
        self.queue = Queue(self.queue_name, exchange=self.exchange, routing_key=self.queue_name,
                           queue_arguments=self.queue_arguments, durable=True)
        self.bus_binding = binding(products_exchange, routing_key=pattern)
        self.dead_letter_queue = Queue(self.dlq_name, exchange=self.dead_letter_exchange,
                                       routing_key=self.dlq_name,
                                       queue_arguments={"x-queue-type": "quorum"}, durable=True)

    def bindings(self) -> list[tuple[str, str]]:
        """Every (exchange, routing key) the subscriber's queue is bound with: the bus, its
        private exchange (retries, replays) and the delayed retries that come back through it
        (Celery binds ``#.<queue>`` too; declared here so that a queue is complete before a
        worker starts)."""
        return [(products_exchange.name, self.bus_binding.routing_key),
                (self.exchange.name, self.queue_name),
                (self.exchange.name, f"#.{self.queue_name}")]

    def delayed_routing_key(self, countdown: int) -> str:
        """The routing key that brings a message published to ``delay_entry`` back to this
        subscriber's queue after ``countdown`` whole seconds (>= 1)."""
        return calculate_routing_key(countdown, self.queue_name)

    def declare(self, channel) -> None:
        """Declare exchanges, queues and bindings (idempotent). The shared ``products``
        exchange is only checked (its owner declares it), everything else is this
        subscriber's own."""
        exchange_ensure(channel.connection, products_exchange)
        for exchange in (self.exchange, self.dead_letter_exchange):
            exchange.declare(channel=channel)
        for queue in (self.dead_letter_queue, self.queue):
            try:
                queue.declare(channel=channel)
            except PreconditionFailed as exc:
                raise TopologyMismatch(mismatch_message(queue, exc, self.name)) from None
        for exchange, routing_key in self.bindings():
            channel.queue_bind(queue=self.queue_name, exchange=exchange, routing_key=routing_key)
        self.declare_delays(channel)

    def declare_delays(self, channel) -> None:
        """This subscriber's delay queues and exchanges, routed back to its private exchange."""
        declare_native_delayed_delivery_exchanges_and_queues(
            _OneChannel(channel), "quorum", prefix=self.delay_prefix)
        channel.exchange_bind(destination=self.exchange.name,
                              source=self.delay_delivery_exchange,
                              routing_key=f"#.{self.queue_name}")


class _OneChannel:
    """kombu's delayed-delivery declare opens a channel of its own and never closes it; hand it
    ours instead."""

    def __init__(self, channel) -> None:
        self._channel = channel

    def channel(self):
        return self._channel


# Every subscriber this repository runs, by name. Being here gives a subscriber
# `manage.py dlq --subscriber <name>`, `manage.py topology check|upgrade`, its queue gauges on
# the catalog's /metrics, its queue upgrade in scripts/bootstrap.py and its broker user role
# (`<NAME>_BROKER_USER`, scripts/broker_users.py). A new one is one `subscribe(...)` line
# (docs/extending.md), here or at the end of this file.
SUBSCRIBERS: dict[str, Subscription] = {}
_NAME = re.compile(r"[a-z][a-z0-9]{0,30}")


def subscribe(subscription: Subscription) -> Subscription:
    """Register ``subscription`` in ``SUBSCRIBERS`` (its name: lower-case letters and digits,
    since it names queues, exchanges, a broker user role and a settings prefix)."""
    if not _NAME.fullmatch(subscription.name):
        raise ValueError(f"subscriber name {subscription.name!r}: lower-case letters and digits")
    if subscription.name in SUBSCRIBERS:
        raise ValueError(f"subscriber {subscription.name!r} is already registered")
    SUBSCRIBERS[subscription.name] = subscription
    return subscription


CATALOG = subscribe(Subscription("catalog", contract.ROUTING_PATTERN_ALL))  # catalog.products
# The audit log (workers/audit.py): every create, update and delete, at its own pace.
AUDIT = subscribe(Subscription("audit", "product.*"))  # audit.products


def mismatch_message(queue: Queue, exc: Exception, subscriber: str = "") -> str:
    head = (f"RabbitMQ refused queue {queue.name!r}: it already exists with other arguments "
            f"({exc}). This worker declares it with {dict(queue.queue_arguments or {})}. ")
    if subscriber and not queue.name.endswith(".dlq"):
        return head + (
            f"To fix: stop this subscriber's workers, run `python catalog_project/manage.py "
            f"topology upgrade --subscriber {subscriber}` (it replaces the queue with these "
            f"arguments and loses no event, also while the relay publishes: docs/operations.md "
            f"\"Upgrading the queue\"), then start the workers again; or run the worker against "
            f"a broker/vhost where the queue has these arguments.")
    return head + (
        f"To fix: stop the consumers, move or drain its messages, delete it "
        f"(`rabbitmqctl delete_queue {queue.name}`), then start the worker again; or run the "
        f"worker against a broker/vhost where the queue has these arguments.")
