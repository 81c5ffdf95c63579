"""What a subscriber's worker needs beyond its broker topology: its retry policy and its
metrics. Each worker app module builds one ``Subscriber`` from its own settings and hands it to
``Subscriber.configure(app)`` (workers/catalog.py, workers/audit.py); the task base class, the
consumer and parking read ``app.subscriber``. Nothing here is shared between subscribers."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from celery import Celery
from celery.events import event as celery_event

from catalog_project.topology import Subscription
from product_events import contract
from workers.metrics import SubscriberMetrics

# Task events go to the shared `celeryev` exchange, which no application user may configure
# (product_events/broker.py): the workers' event dispatcher declares it before every publish and
# Flower's event receiver on connect, so make those declares passive (they need no permission).
# Set here, imported by every worker app module (`celery -A workers.catalog worker|flower`).
celery_event.event_exchange.passive = True


@dataclass(frozen=True)
class RetryPolicy:
    """Transient errors while the database answers (a deadlock, a connection reset) are retried
    up to ``max_retries`` times with exponential backoff and jitter, then the events are parked.
    While the database does not answer at all the worker pauses instead (workers/handling.py):
    no budget is spent and nothing is parked, however long it lasts."""

    max_retries: int = 10
    backoff_base: float = 1.0
    backoff_max: float = 120.0
    # while the database is unreachable a message is held this long, then sent round the delay
    # queue without spending the retry budget (an outage of any length parks nothing)
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
      the default, "" none);
    * ``apply``: the dotted path of ``apply(*, events: list[ProductEvent])``, which writes the
      valid events of one message in one transaction, idempotently, and returns an object with
      ``applied``, ``stale`` and ``applied_events`` (imported in the pool process, on first use).

    The task is registered under the contract's name (docs/events.md) with the task base class
    ``workers.handling:ProductEventsTask`` (validation, parking each invalid event alone, pause
    while the database is away, retries, metrics); the app takes the ``CELERY_*`` settings of
    the subscriber's Django project, which must keep the worker settings the catalog's have
    (acks late, reject on worker lost, JSON only: docs/extending.md)."""
    from django.utils.module_loading import import_string

    subscriber = Subscriber(subscription, retry=RetryPolicy.from_env(env, prefix),
                            metrics_bind=env(f"{prefix}_WORKER_METRICS_BIND",
                                             default=metrics_bind))
    app = Celery(subscription.name, task_cls="workers.handling:ProductEventsTask")
    app.config_from_object("django.conf:settings", namespace="CELERY")
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
