"""A subscriber worker's Prometheus metrics, named after the subscriber: ``catalog_events_*``
in the catalog worker, ``audit_events_*`` in the audit worker. Counted in the prefork children
(and the parent, for messages parked before they become tasks) through prometheus_client's
multiprocess mode; served by the parent on the subscriber's ``metrics_bind``.

Each ``Subscriber`` (workers/subscriber.py) owns one ``SubscriberMetrics``."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property

from celery import signals
from prometheus_client import Counter, Gauge, Histogram

LAG_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class SubscriberMetrics:
    def __init__(self, name: str) -> None:
        self.name = name

    # Built on first use: after the worker switched prometheus_client to multiprocess mode, and
    # in the process that counts (each writes its own file).
    @cached_property
    def _m(self) -> dict:
        name = self.name
        return {
            "applied": Counter(f"{name}_events_applied", f"Events that changed the {name}."),
            "stale": Counter(f"{name}_events_stale",
                             "Events ignored as duplicates or older than the stored version."),
            "dead_lettered": Counter(f"{name}_events_dead_lettered",
                                     "Events or messages parked in the dead-letter queue.",
                                     ["kind"]),
            "retries": Counter(f"{name}_task_retries",
                               "Batches scheduled for a retry after a transient error."),
            "paused": Gauge(f"{name}_paused", f"1 while the {name} worker holds its messages "
                            "because its database is unreachable (it takes no new ones).",
                            ["reason"], multiprocess_mode="livemax"),
            "lag": Histogram(f"{name}_event_lag_seconds",
                             f"From the change in the admin (occurred_at) to applied in the "
                             f"{name}.", buckets=LAG_BUCKETS),
        }

    def applied(self, events, stale: int) -> None:
        m = self._m
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

    def dead_lettered(self, n: int, *, kind: str) -> None:
        """``kind``: "event" (one event of a batch) or "message" (a whole message)."""
        if n:
            self._m["dead_lettered"].labels(kind=kind).inc(n)

    def retried(self) -> None:
        self._m["retries"].inc()

    def paused(self, on: bool, reason: str = "database") -> None:
        self._m["paused"].labels(reason=reason).set(1 if on else 0)

    def serve_while_worker_runs(self, app, *, bind: str) -> None:
        """Prepare multiprocess mode before the pool forks, serve on ``bind`` (host:port, empty:
        no exporter) once ``app``'s worker is ready, clean up when it stops."""
        prefix = f"{self.name}-worker"

        def ours(sender=None, instance=None, **_kwargs) -> bool:
            worker = instance or sender
            return getattr(worker, "app", app) is app

        @signals.celeryd_init.connect(weak=False)
        def _prepare(sender=None, instance=None, **kwargs):
            if ours(sender, instance):
                from common import metrics

                metrics.multiprocess_prepare(prefix=prefix)

        @signals.worker_ready.connect(weak=False)
        def _serve(sender=None, **kwargs):
            if ours(sender):
                from common import metrics

                metrics.exporter_start(bind)

        @signals.worker_shutdown.connect(weak=False)
        def _cleanup(sender=None, **kwargs):
            if ours(sender):
                from common import metrics

                metrics.multiprocess_cleanup()
