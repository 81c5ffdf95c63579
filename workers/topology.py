"""The catalog's broker topology, declared in one place.

    products (topic, owned by the publisher)
        --product.#-->  catalog.products  (quorum queue, delivery limit, dead-lettering)
    catalog (topic, private to the catalog: retries and replays go here, not to the bus,
             so other subscribers of ``products`` never see the catalog's retries)
        --catalog.products-->  catalog.products
    catalog.dlx (direct)
        --catalog.products.dlq-->  catalog.products.dlq  (quorum queue: parked messages)

Queue arguments are part of the contract with the broker: RabbitMQ refuses to redeclare a queue
with different arguments (406 PRECONDITION_FAILED). ``topology_declare`` turns that into an
actionable message.
"""

from __future__ import annotations

import logging

from amqp.exceptions import PreconditionFailed
from kombu import Exchange, Queue, binding

from product_events import contract

logger = logging.getLogger("workers.topology")

DELIVERY_LIMIT = 10  # redeliveries (crash loops, requeues) before the broker dead-letters

products_exchange = Exchange(contract.EXCHANGE, contract.EXCHANGE_TYPE, durable=True)
catalog_exchange = Exchange("catalog", "topic", durable=True)
dead_letter_exchange = Exchange("catalog.dlx", "direct", durable=True)

CATALOG_QUEUE_ARGUMENTS = {
    "x-queue-type": "quorum",
    "x-delivery-limit": DELIVERY_LIMIT,
    "x-dead-letter-exchange": dead_letter_exchange.name,
    "x-dead-letter-routing-key": contract.CATALOG_DLQ,
    # at-least-once dead-lettering: a message is only removed once the DLQ confirmed it
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}

# The queue as Celery sees it: its exchange/routing key is the private one, so retries
# (native delayed delivery on quorum queues) come back to this queue only.
catalog_queue = Queue(
    contract.CATALOG_QUEUE,
    exchange=catalog_exchange,
    routing_key=contract.CATALOG_QUEUE,
    queue_arguments=CATALOG_QUEUE_ARGUMENTS,
    durable=True,
)
bus_binding = binding(products_exchange, routing_key=contract.ROUTING_PATTERN_ALL)

dead_letter_queue = Queue(
    contract.CATALOG_DLQ,
    exchange=dead_letter_exchange,
    routing_key=contract.CATALOG_DLQ,
    queue_arguments={"x-queue-type": "quorum"},
    durable=True,
)


class TopologyMismatch(SystemExit):
    pass


def topology_declare(channel) -> None:
    """Declare exchanges, queues and bindings (idempotent)."""
    for exchange in (products_exchange, catalog_exchange, dead_letter_exchange):
        exchange.declare(channel=channel)
    for queue in (dead_letter_queue, catalog_queue):
        try:
            queue.declare(channel=channel)
        except PreconditionFailed as exc:
            raise TopologyMismatch(mismatch_message(queue, exc)) from None
    channel.queue_bind(queue=catalog_queue.name, exchange=products_exchange.name,
                       routing_key=bus_binding.routing_key)


def mismatch_message(queue: Queue, exc: Exception) -> str:
    return (
        f"RabbitMQ refused queue {queue.name!r}: it already exists with other arguments "
        f"({exc}). This worker declares it with {dict(queue.queue_arguments or {})}. "
        f"To fix: stop the consumers, move or drain its messages, delete it "
        f"(`rabbitmqctl delete_queue {queue.name}`), then start the worker again; or run the "
        f"worker against a broker/vhost where the queue has these arguments."
    )
