"""The broker entities every producer and subscriber shares, and who may change them.

``products`` (the bus) and ``celeryev`` (Celery's task events, which Flower reads) are shared:
no application user may configure them, so none can delete them (RabbitMQ 3.10 has no separate
delete permission: configure is declare *and* delete). Their owner declares them:
``scripts/broker_users.py`` (compose's init step, the tests) and ``scripts/bootstrap.py``
(``make run``). Everyone else only makes sure they exist with a passive declare, which needs no
permission at all, and declares them itself only when they are missing and it may (a local
broker with the ``guest`` user).

Plain kombu: importing this needs neither Django nor Celery."""

from __future__ import annotations

import contextlib

from amqp.exceptions import AccessRefused, NotFound
from kombu import Exchange

from product_events import contract

PRODUCTS_EXCHANGE = Exchange(contract.EXCHANGE, contract.EXCHANGE_TYPE, durable=True)
EVENTS_EXCHANGE = Exchange("celeryev", "topic", durable=True)  # Celery's event_exchange default
SHARED_EXCHANGES = (PRODUCTS_EXCHANGE, EVENTS_EXCHANGE)


class SharedExchangeMissing(Exception):
    """A shared exchange does not exist and this broker user may not declare it."""


def exchange_ensure(connection, exchange: Exchange) -> None:
    """Make sure ``exchange`` exists: a passive declare first (no permission needed), a real
    declare only when it is missing. Raises ``SharedExchangeMissing`` with what to do when it is
    missing and this user may not create it."""
    with _channel(connection) as channel:
        try:
            exchange(channel).declare(passive=True)
            return
        except NotFound:
            pass  # the broker closed this channel; declare on a fresh one
    with _channel(connection) as channel:
        try:
            exchange(channel).declare()
        except AccessRefused:
            raise SharedExchangeMissing(
                f"exchange {exchange.name!r} does not exist on this vhost and this broker user "
                f"may not declare it: its owner declares it (`python scripts/broker_users.py`, "
                f"or `make run`'s bootstrap)") from None


def shared_exchanges_declare(connection) -> None:
    """The owner's declare of every shared exchange (idempotent)."""
    with _channel(connection) as channel:
        for exchange in SHARED_EXCHANGES:
            exchange(channel).declare()


@contextlib.contextmanager
def _channel(connection):
    channel = connection.channel()
    try:
        yield channel
    finally:
        with contextlib.suppress(Exception):  # a channel error already closed it
            channel.close()
