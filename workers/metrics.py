"""A subscriber worker's Prometheus metrics, named after the subscriber: ``catalog_events_*``
in the catalog worker, ``audit_events_*`` in the audit worker. Counted in the prefork children
(and the parent, for messages parked before they become tasks) through prometheus_client's
multiprocess mode; served by the parent on ``<NAME>_WORKER_METRICS_BIND``.

A worker's app module calls ``worker_metrics(app, name=..., bind=...)`` once (workers/catalog.py,
workers/audit.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from celery import signals
from prometheus_client import Counter, Histogram

_subscriber = {"name": "catalog"}  # set by worker_metrics() in the worker's app module


def worker_metrics(app, *, name: str, bind: str) -> None:
    """Count under ``<name>_...`` and serve on the setting called ``bind`` (host:port, empty:
    no exporter) while ``app``'s worker runs in this process."""
    _subscriber["name"] = name
    _m.cache_clear()

    def ours(sender=None, instance=None, **_kwargs) -> bool:
        worker = instance or sender
        return getattr(worker, "app", app) is app

    @signals.celeryd_init.connect(weak=False)
    def _prepare(sender=None, instance=None, **kwargs):
        if ours(sender, instance):
            from common import metrics

            metrics.multiprocess_prepare(prefix=f"{name}-worker")

    @signals.worker_ready.connect(weak=False)
    def _serve(sender=None, **kwargs):
        if ours(sender):
            from django.conf import settings

            from common import metrics

            metrics.exporter_start(getattr(settings, bind))

    @signals.worker_shutdown.connect(weak=False)
    def _cleanup(sender=None, **kwargs):
        if ours(sender):
            from common import metrics

            metrics.multiprocess_cleanup()


@cache
def _m():
    # Built on first use: after the worker switched prometheus_client to multiprocess mode, and
    # in the process that counts (each writes its own file).
    name = _subscriber["name"]
    return {
        "applied": Counter(f"{name}_events_applied", f"Events that changed the {name}."),
        "stale": Counter(f"{name}_events_stale",
                         "Events ignored as duplicates or older than the stored version."),
        "dead_lettered": Counter(f"{name}_events_dead_lettered",
                                 "Events or messages parked in the dead-letter queue.",
                                 ["kind"]),
        "retries": Counter(f"{name}_task_retries",
                           "Batches scheduled for a retry after a transient error."),
        "lag": Histogram(f"{name}_event_lag_seconds",
                         f"From the change in the admin (occurred_at) to applied in the {name}.",
                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300,
                                  1800)),
    }


def applied(events, stale: int) -> None:
    m = _m()
    m["applied"].inc(len(events))
    if stale:
        m["stale"].inc(stale)
    now = datetime.now(UTC)
    for event in events:
        try:
            occurred = datetime.fromisoformat(event.occurred_at)
        except ValueError:
            continue
        m["lag"].observe(max(0.0, (now - occurred).total_seconds()))


def dead_lettered(n: int, *, kind: str) -> None:
    """``kind``: "event" (one event of a batch) or "message" (a whole message)."""
    if n:
        _m()["dead_lettered"].labels(kind=kind).inc(n)


def retried() -> None:
    _m()["retries"].inc()
