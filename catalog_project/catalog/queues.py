"""The subscribers' queues on the broker: are they there (``manage.py topology check``, the
catalog's ``/metrics``), and replacing a queue whose arguments changed without a moment in which
the subscriber has no queue bound (``manage.py topology upgrade``).

Why both matter: the relay publishes with ``mandatory``, which only fails when *no* queue takes
a message. With ``audit.products`` bound and ``catalog.products`` gone, an event is confirmed,
marked sent, and never reaches the catalog. So a subscriber's queue must never be missing while
the relay runs, and a missing one must be seen.

The upgrade, for subscriber ``<s>`` with queue ``Q = <s>.products``:

1. declare the holding queue ``H = Q.upgrade`` (quorum) with every binding of Q
   (``Subscription.bindings``: the bus pattern, the private exchange, delayed retries): from
   now on every event for the subscriber is also in H;
2. unbind Q (it takes nothing new), move its messages to H (confirmed, then acked), delete it
   (only if empty and without consumers: the workers must be stopped);
3. declare Q with the new arguments and all its bindings;
4. unbind H, move its messages to Q, delete H.

At every moment Q, H or both are bound: nothing published meanwhile is lost. Events can arrive
twice (in Q before step 1 ended and in H); subscribers apply idempotently. Every step is
idempotent, so a run that was interrupted is finished by running it again (an existing H means
an upgrade in progress)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import amqp
from amqp.exceptions import ConnectionError as AMQPConnectionError
from amqp.exceptions import NotFound, PreconditionFailed
from kombu import Connection
from kombu.transport.native_delayed_delivery import level_name

from catalog_project.topology import SUBSCRIBERS, Subscription


def _confirm_timeout() -> float:
    from django.conf import settings

    return settings.CATALOG_BROKER_CONFIRM_TIMEOUT
MOVE_DROP_HEADERS = ("x-delivery-count",)  # set by the quorum queue that delivered it


@dataclass(frozen=True)
class QueueState:
    subscriber: str
    queue: str
    role: str                 # "queue" (bound to the bus), "dlq", or "holding" (upgrade)
    present: bool
    messages: int = 0         # ready (not unacked)
    consumers: int = 0


def broker_connection(url: str) -> Connection:
    """Confirms on, and every wait bounded (``CATALOG_BROKER_*_TIMEOUT``): during a broker
    alarm a move's publish fails instead of hanging; the command stops and can be run again."""
    from django.conf import settings

    io = settings.CATALOG_BROKER_IO_TIMEOUT
    return Connection(url, connect_timeout=settings.CATALOG_BROKER_CONNECT_TIMEOUT,
                      transport_options={"confirm_publish": True, "read_timeout": io,
                                         "write_timeout": io})


# `dlq` and `topology` exit with this status, and one line, when the broker cannot be reached
# or stops answering (1 is for what they found: a missing queue, a replay without confirm)
BROKER_UNREACHABLE = 2


@contextlib.contextmanager
def broker_errors_as_one_line(url: str):
    """A broker that cannot be reached (or answers no more) becomes a ``CommandError`` of one
    line naming the broker (without its password) and exit status ``BROKER_UNREACHABLE``."""
    from django.core.management.base import CommandError
    from kombu.exceptions import OperationalError as KombuOperationalError

    try:
        yield
    except (OSError, KombuOperationalError, AMQPConnectionError) as exc:
        where = Connection(url).as_uri()  # the password masked
        raise CommandError(f"broker unreachable at {where}: {type(exc).__name__}: "
                           f"{str(exc).strip() or 'no answer'}",
                           returncode=BROKER_UNREACHABLE) from None


def _passive(conn: Connection, name: str) -> tuple[int, int] | None:
    """(ready messages, consumers) of queue ``name``, or None if it does not exist. A passive
    declare creates nothing and needs no permission on the queue."""
    channel = conn.channel()
    try:
        ok = channel.queue_declare(queue=name, passive=True)
        return ok.message_count, ok.consumer_count
    except NotFound:
        return None
    finally:
        with contextlib.suppress(Exception):  # a 404 already closed it
            channel.close()


def queue_states(conn: Connection,
                 subscriptions: Iterable[Subscription] = SUBSCRIBERS.values(),
                 ) -> list[QueueState]:
    """Each subscriber's queue and DLQ (always listed: present or not), and its holding queue
    when an upgrade is in progress. Broker errors other than "no such queue" propagate."""
    out = []
    for sub in subscriptions:
        for name, role in ((sub.queue_name, "queue"), (sub.dlq_name, "dlq"),
                           (sub.holding_queue_name, "holding")):
            found = _passive(conn, name)
            if found is None and role == "holding":
                continue
            messages, consumers = found or (0, 0)
            out.append(QueueState(sub.name, name, role, found is not None, messages, consumers))
    return out


def delayed_messages(conn: Connection,
                     subscriptions: Iterable[Subscription] = SUBSCRIBERS.values(),
                     ) -> dict[str, int]:
    """Messages waiting for a retry's countdown in each subscriber's own delay queues
    (``<name>_celery_delayed_27`` ... ``_0``): ready there, but in no queue the worker reads
    until their delay ends. A missing level counts 0."""
    out = {}
    for sub in subscriptions:
        out[sub.name] = sum((_passive(conn, level_name(level, sub.delay_prefix)) or (0, 0))[0]
                            for level in range(28))
    return out


class UpgradeRefused(Exception):
    """The upgrade cannot go on safely; the message says why and what to do. Nothing is lost:
    running the upgrade again continues where it stopped."""


class QueueUpgrade:
    """``topology upgrade`` for one subscriber (see the module docstring)."""

    def __init__(self, conn: Connection, sub: Subscription,
                 say: Callable[[str], None] = print, if_exists: bool = False) -> None:
        self.conn, self.sub, self.say = conn, sub, say
        self.if_exists = if_exists  # a missing queue is left to the worker to declare

    def run(self) -> str:
        sub = self.sub
        current = _passive(self.conn, sub.queue_name)
        holding = _passive(self.conn, sub.holding_queue_name)
        self._check_dlq()
        up_to_date = current is not None and self._declared_as_now(sub.queue_name)
        if up_to_date and holding is None:
            self._declare_queue()  # bindings too (idempotent)
            return f"{sub.queue_name} is up to date: nothing to do"
        if current is None and holding is None and self.if_exists:
            return f"{sub.queue_name} does not exist yet: its worker declares it"
        if current is None and holding is None:
            self._declare_queue()
            return (f"{sub.queue_name} was missing and is declared now. Events published while "
                    f"it was missing did not reach the {sub.name} subscriber: run "
                    f"`python admin_project/manage.py reconcile --repair`")
        if not up_to_date and current is not None and current[1]:
            raise UpgradeRefused(
                f"{sub.queue_name} has {current[1]} consumer(s): stop the {sub.name} workers "
                f"first (they would hold messages the upgrade cannot move), then run it again")
        if holding is not None:
            self.say(f"resuming an upgrade: {sub.holding_queue_name} exists "
                     f"({holding[0]} messages)")
        # 1. from here on, every event for the subscriber is in the holding queue too
        self._declare_holding()
        self.say(f"1/4 {sub.holding_queue_name} declared, bound like {sub.queue_name}")
        if current is not None and not up_to_date:
            # 2. the old queue takes nothing new; what it holds goes to the holding queue
            self._unbind(sub.queue_name)
            moved = self._drain_and_delete(sub.queue_name)
            self.say(f"2/4 {sub.queue_name} unbound, {moved} messages moved to "
                     f"{sub.holding_queue_name}, deleted")
        # 3. the queue as this release declares it
        self._declare_queue()
        self.say(f"3/4 {sub.queue_name} declared with {sub.queue_arguments}")
        # 4. everything new goes to the new queue only; move what the holding queue has
        self._unbind(sub.holding_queue_name)
        moved = self._drain_and_delete(sub.holding_queue_name)
        self.say(f"4/4 {sub.holding_queue_name} unbound, {moved} messages moved to "
                 f"{sub.queue_name}, deleted")
        return (f"{sub.queue_name} upgraded; start the {sub.name} workers "
                f"(duplicates from the move are ignored by version / event id)")

    # --- steps ---
    def _check_dlq(self) -> None:
        sub = self.sub
        if _passive(self.conn, sub.dlq_name) is not None and not self._declared_as_now(
                sub.dlq_name, sub.dead_letter_queue.queue_arguments):
            raise UpgradeRefused(
                f"{sub.dlq_name} exists with other arguments. It is bound to no exchange of the "
                f"bus: replay or purge it (`manage.py dlq --subscriber {sub.name}`), delete it, "
                f"then run the upgrade again")

    def _declared_as_now(self, name: str, arguments: dict | None = None) -> bool:
        """Does the existing queue ``name`` have the arguments this release declares? (An
        active declare with the same arguments changes nothing; other ones get a 406.)"""
        channel = self.conn.channel()
        try:
            channel.queue_declare(queue=name, durable=True, auto_delete=False,
                                  arguments=self.sub.queue_arguments if arguments is None
                                  else arguments)
            return True
        except PreconditionFailed:
            return False
        finally:
            with contextlib.suppress(Exception):
                channel.close()

    def _declare_queue(self) -> None:
        with self._channel() as channel:
            self.sub.declare(channel)

    def _declare_holding(self) -> None:
        sub = self.sub
        with self._channel() as channel:
            for exchange in (sub.exchange, sub.dead_letter_exchange):  # its own: idempotent
                exchange.declare(channel=channel)
            channel.queue_declare(queue=sub.holding_queue_name, durable=True, auto_delete=False,
                                  arguments={"x-queue-type": "quorum"})
            for exchange, routing_key in sub.bindings():
                channel.queue_bind(queue=sub.holding_queue_name, exchange=exchange,
                                   routing_key=routing_key)

    def _unbind(self, queue: str) -> None:
        with self._channel() as channel:
            for exchange, routing_key in self.sub.bindings():
                channel.queue_unbind(queue=queue, exchange=exchange, routing_key=routing_key)

    def _drain_and_delete(self, queue: str, attempts: int = 5) -> int:
        """Move ``queue``'s messages, then delete it once it is empty and has no consumer.
        (Quorum queues refuse ``queue.delete`` with if-empty / if-unused, so this checks just
        before: the queue is unbound by now, nothing new arrives.)"""
        moved = 0
        for _ in range(attempts):
            moved += self._move(queue)
            found = _passive(self.conn, queue)
            if found is None:
                return moved
            messages, consumers = found
            if consumers:
                raise UpgradeRefused(
                    f"a consumer attached to {queue}: stop the {self.sub.name} workers and run "
                    f"the upgrade again (nothing is lost)")
            if not messages:
                with self._channel() as channel:
                    channel.queue_delete(queue=queue)
                return moved
        raise UpgradeRefused(
            f"{queue} keeps receiving messages after it was unbound: it has a binding this "
            f"release does not declare (`rabbitmqctl list_bindings`); remove it and run the "
            f"upgrade again (nothing is lost)")

    def _move(self, source: str) -> int:
        """Move every message of ``source`` to the subscriber's queue through its private
        exchange (whichever of Q and H is bound there): each is published with confirms and
        ``mandatory`` (an unroutable one raises), then acked. A crash in between leaves the
        message unacked, back in ``source``: a duplicate at worst."""
        moved = 0
        with self._channel() as channel:
            while True:
                raw = channel.basic_get(source, no_ack=False)
                if raw is None:
                    return moved
                properties = dict(raw.properties)
                properties.pop("user_id", None)  # RabbitMQ checks it against the publisher
                headers = {k: v for k, v in (properties.pop("application_headers", None)
                                             or {}).items() if k not in MOVE_DROP_HEADERS}
                channel.basic_publish(amqp.Message(raw.body, application_headers=headers,
                                                   **properties),
                                      exchange=self.sub.exchange.name,
                                      routing_key=self.sub.queue_name, mandatory=True,
                                      confirm_timeout=_confirm_timeout())
                channel.basic_ack(raw.delivery_tag)
                moved += 1

    @contextlib.contextmanager
    def _channel(self):
        channel = self.conn.channel()
        try:
            yield channel
        finally:
            with contextlib.suppress(Exception):
                channel.close()
