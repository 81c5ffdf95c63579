"""What a subscriber's worker needs beyond its broker topology: its retry policy and its
metrics. Each worker app module builds one ``Subscriber`` from its own settings and hands it to
``Subscriber.configure(app)`` (workers/catalog.py, workers/audit.py); the task base class, the
consumer and parking read ``app.subscriber``. Nothing here is shared between subscribers."""

from __future__ import annotations

import logging
import os
import random
import sys
from dataclasses import dataclass, field

from celery import Celery, signals
from celery.events import event as celery_event

from catalog_project.topology import Subscription
from product_events import contract
from workers.grouping import GroupCommit
from workers.metrics import SubscriberMetrics

# Task events go to the shared `celeryev` exchange, which no application user may configure
# (product_events/broker.py): the workers' event dispatcher declares it before every publish and
# Flower's event receiver on connect, so make those declares passive (they need no permission).
# Set here, imported by every worker app module (`celery -A workers.catalog worker|flower`).
celery_event.event_exchange.passive = True


@dataclass(frozen=True)
class RetryPolicy:
    """How a subscriber waits out errors about its database rather than its events (a broken
    connection, read-only, out of disk, a lock or statement timeout, a deadlock:
    ``workers.handling.transient``). Nothing is parked for them, however long they last
    (workers/handling.py): the task holds its message and tries the write again, after a pause
    doubling from 0.2 s to ``backoff_max`` seconds (one probe a second while the database does
    not answer at all), for ``hold_seconds``; then the message goes round the subscriber's delay
    queue (``backoff_base`` seconds, with jitter, at least 1) and is held again. After
    ``max_retries`` such rounds each further one is logged as an error."""

    max_retries: int = 10
    backoff_base: float = 1.0
    backoff_max: float = 5.0
    hold_seconds: float = 60.0

    @classmethod
    def from_env(cls, env, prefix: str) -> RetryPolicy:
        """``<prefix>_RETRY_MAX``, ``<prefix>_RETRY_BACKOFF_BASE``, ``<prefix>_RETRY_BACKOFF_MAX``,
        ``<prefix>_PAUSE_HOLD_SECONDS`` (seconds), each defaulting to the class's value."""
        return cls(max_retries=env.int(f"{prefix}_RETRY_MAX", default=cls.max_retries),
                   backoff_base=env.float(f"{prefix}_RETRY_BACKOFF_BASE",
                                          default=cls.backoff_base),
                   backoff_max=env.float(f"{prefix}_RETRY_BACKOFF_MAX", default=cls.backoff_max),
                   hold_seconds=env.float(f"{prefix}_PAUSE_HOLD_SECONDS",
                                          default=cls.hold_seconds))

    def countdown(self, retries: int) -> int:
        """Exponential backoff with "equal jitter" (half fixed, half random), capped, and at
        least 1 s (native delayed delivery on quorum queues needs whole seconds >= 1)."""
        cap = min(self.backoff_max, self.backoff_base * 2**retries)
        return max(1, round(cap / 2 + random.uniform(0, cap / 2)))


@dataclass
class Subscriber:
    subscription: Subscription
    retry: RetryPolicy
    metrics_bind: str = ""  # host:port of the worker's Prometheus exporter; "" = none
    metrics: SubscriberMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = SubscriberMetrics(self.subscription.name)
        self._groups: dict = {}
        self._groups_pid = 0

    def group_commit(self, apply) -> GroupCommit:
        """The ``GroupCommit`` of ``apply`` in this process (workers/grouping.py): the tasks
        running at once in this process share a transaction."""
        if self._groups_pid != os.getpid():  # made after a fork, never inherited
            self._groups, self._groups_pid = {}, os.getpid()
        group = self._groups.get(apply)
        if group is None:
            group = self._groups.setdefault(apply, GroupCommit(apply))
        return group

    @property
    def name(self) -> str:
        return self.subscription.name

    def configure(self, app) -> None:
        """Point a Celery app at this subscriber's queue, its consumer at this topology, and
        serve its metrics while the app's worker runs."""
        sub = self.subscription
        app.subscriber = self
        app.conf.task_queues = [sub.queue]
        app.conf.task_default_queue = sub.queue_name
        app.conf.task_default_exchange = sub.exchange.name
        app.conf.task_default_exchange_type = sub.exchange.type
        app.conf.task_default_routing_key = sub.queue_name
        # Remote control through `<name>.pidbox` (not Celery's shared `celery.pidbox`), so that
        # only this subscriber's broker user (and Flower, for the catalog) can reach its
        # workers: scripts/broker_users.py.
        app.conf.control_exchange = sub.name
        # Declares the topology on every (re)connect, before consuming, and parks (with a
        # reason) what Celery cannot turn into a task instead of dropping it.
        app.conf.worker_consumer = "workers.consumer:SubscriberConsumer"
        self.metrics.serve_while_worker_runs(app, bind=self.metrics_bind)
        _console_in_log_format(app)


# ``<PREFIX>_WORKER_POOL``: "threads" is workers/pool.py's resizable thread pool (the default);
# anything else is a Celery pool name ("prefork", "solo", ...) or a "module:Class" path.
POOLS = {"threads": "workers.pool:ThreadPool"}
# One thread for everything: a message held while the database is away would stop the consumer
# loop itself (no heartbeats, no health check answer); eventlet and gevent would need the whole
# stack patched for them.
UNSUPPORTED_POOLS = ("solo", "eventlet", "gevent")


def worker_pool(name: str) -> str:
    return POOLS.get(name, name)


def _pool_on_command_line() -> bool:
    return any(arg in ("-P", "--pool") or arg.startswith("--pool=")
               or (arg.startswith("-P") and len(arg) > 2) for arg in sys.argv[1:])


def _console_in_log_format(app) -> None:
    """With ``<PREFIX>_LOG_FORMAT=json`` every line a worker writes is a JSON object: Celery's
    start-up banner (plain text, printed) gives way to one log record saying the same, and its
    console notices ("worker: Warm shutdown (MainProcess)", printed from signal handlers, where
    logging could deadlock) are printed as JSON lines of the same keys."""

    @signals.celeryd_init.connect(weak=False)
    def _init(sender=None, instance=None, **kwargs):
        from django.conf import settings

        if getattr(instance, "app", None) is not app or \
                getattr(settings, "LOG_FORMAT", "plain") != "json":
            return
        import celery.apps.worker as celery_worker

        from common.logs import json_line

        def say(msg, f=sys.__stderr__):
            print(json_line(str(msg).strip(), logger="celery.apps.worker", level="WARNING"),
                  file=f, flush=True)

        celery_worker.safe_say = say
        instance.quiet = True  # no banner
        logging.getLogger("celery.apps.worker").info(
            "worker %s starting: app %s, transport %s, pool %s, concurrency %s, queues %s",
            sender, app.main, app.connection_for_read().as_uri(), app.conf.worker_pool,
            kwargs.get("options", {}).get("concurrency"),
            ", ".join(q.name for q in app.conf.task_queues or ()))


def subscriber_app(subscription: Subscription, *, env, prefix: str, apply: str,
                   metrics_bind: str = "") -> Celery:
    """The whole Celery app of one subscriber of the product bus: what a new subscriber writes
    is its ``Subscription`` (catalog_project/topology.py), its ``apply`` service, this call and
    a line in the Procfile (docs/extending.md).

    * ``env``: the django-environ ``Env`` of the subscriber's Django settings (set
      ``DJANGO_SETTINGS_MODULE`` before importing them);
    * ``prefix``: its settings prefix: ``<prefix>_RETRY_MAX``, ``<prefix>_RETRY_BACKOFF_BASE``,
      ``<prefix>_RETRY_BACKOFF_MAX``, ``<prefix>_PAUSE_HOLD_SECONDS`` (RetryPolicy) and
      ``<prefix>_WORKER_METRICS_BIND`` (its Prometheus exporter, host:port; ``metrics_bind`` is
      the default, "" none), ``<prefix>_WORKER_POOL`` (``threads``, the default, or a Celery
      pool name such as ``prefork``);
    * ``apply``: the dotted path of ``apply(*, events: list[ProductEvent])``, which writes the
      valid events it is given in one transaction, idempotently, whatever their order and
      duplication (the events of several messages at once: workers/grouping.py), and returns an
      object with ``applied``, ``stale`` and ``applied_events`` (the very event objects it was
      given that changed something); imported in the pool process, on first use.

    The task is registered under the contract's name (docs/events.md) with the task base class
    ``workers.handling:ProductEventsTask`` (validation, parking each invalid event alone, pause
    while the database is away, retries, metrics); the app takes the ``CELERY_*`` settings of
    the subscriber's Django project, which must keep the worker settings the catalog's have
    (acks late, reject on worker lost, JSON only: docs/extending.md)."""
    from django.utils.module_loading import import_string

    subscriber = Subscriber(subscription, retry=RetryPolicy.from_env(env, prefix),
                            metrics_bind=env(f"{prefix}_WORKER_METRICS_BIND",
                                             default=metrics_bind))
    app = Celery(subscription.name, task_cls="workers.handling:ProductEventsTask",
                 events="workers.events:Events")  # Flower's events, cheaper to publish
    app.config_from_object("django.conf:settings", namespace="CELERY")
    if not _pool_on_command_line():
        # (Celery lets a configured pool win over "-P prefork" on the command line, and only
        # over that one: configured only when the command line names no pool, the command
        # line always wins)
        app.conf.worker_pool = worker_pool(env(f"{prefix}_WORKER_POOL", default="threads"))
    if str(app.conf.worker_pool).split(".")[-1] in UNSUPPORTED_POOLS:
        raise SystemExit(f"{prefix}_WORKER_POOL={app.conf.worker_pool}: not supported; use "
                         "threads (the default) or prefork (docs/operations.md, \"Scaling "
                         "workers\")")
    subscriber.configure(app)
    resolved: list = []

    @app.task(name=contract.TASK_APPLY_PRODUCT_EVENTS, bind=True, shared=False)
    def apply_product_events(self, events=None, **unexpected):
        if not resolved:
            resolved.append(import_string(apply))
        return self.handle(events, unexpected, apply=resolved[0])

    apply_product_events.__doc__ = f"Product events for the {subscription.name} subscriber: " \
                                   f"{apply}."
    return app
