"""A subscriber worker's Prometheus metrics, named after the subscriber: ``catalog_events_*``
in the catalog worker, ``audit_events_*`` in the audit worker. Counted in the prefork children
(and the parent, for messages parked before they become tasks) through prometheus_client's
multiprocess mode; served by the parent on the subscriber's ``metrics_bind``.

Each ``Subscriber`` (workers/subscriber.py) owns one ``SubscriberMetrics``."""

from __future__ import annotations

from bisect import bisect_left
from datetime import UTC, datetime
from functools import cached_property

from celery import signals
from prometheus_client import Counter, Histogram

LAG_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


def observe_many(histogram: Histogram, amounts: list[float]) -> None:
    """``histogram.observe(a)`` for each of ``amounts``, with one update per bucket touched
    instead of one per amount: in multiprocess mode each update is a locked write to a mapped
    file, and a batch of 100 events shared 2-3 buckets. The same counts and sum as observing
    one by one (tests/catalog/test_worker.py checks); prometheus_client has no batch observe,
    so this uses its Histogram's fields, and falls back to ``observe`` if they change."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    counts: dict[int, int] = {}
    for amount in amounts:
        i = bisect_left(bounds, amount)  # the first bucket with amount <= its bound
        counts[i] = counts.get(i, 0) + 1
    for i, n in counts.items():
        buckets[i].inc(n)
    if amounts:
        total.inc(sum(amounts))


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
        lags = []
        for event in events:
            try:
                occurred = datetime.fromisoformat(event.occurred_at)
            except ValueError:
                continue
            lags.append(max(0.0, (now - occurred).total_seconds()))
        observe_many(m["lag"], lags)

    def dead_lettered(self, n: int, *, kind: str) -> None:
        """``kind``: "event" (one event of a batch) or "message" (a whole message)."""
        if n:
            self._m["dead_lettered"].labels(kind=kind).inc(n)

    def retried(self) -> None:
        self._m["retries"].inc()

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
                from workers import handling

                handling.pause_markers_clean(app.subscriber)

                metrics.exporter_start(bind, extra_collectors=[InFlightCollector(self.name),
                                                               PausedCollector(app.subscriber)])

        @signals.worker_shutdown.connect(weak=False)
        def _cleanup(sender=None, **kwargs):
            if ours(sender):
                from common import metrics
                from workers import handling

                metrics.multiprocess_cleanup()
                handling.pause_end_quietly(app.subscriber)


class InFlightCollector:
    """``<name>_messages_in_flight``: messages this worker has received and not yet acked or
    rejected (prefetched, running, held while paused, waiting for their countdown), read at
    scrape time in the worker's main process, which holds them (Celery's reserved requests).
    The broker counts them as unacked, not as ready: without this a paused worker's messages
    are in no queue-depth gauge."""

    def __init__(self, name: str) -> None:
        self.name = name

    def collect(self):
        from celery.worker import state
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(
            f"{self.name}_messages_in_flight",
            f"Messages the {self.name} worker holds, received and not yet acknowledged "
            "(prefetched, running, held while paused).", value=len(state.reserved_requests))


class PausedCollector:
    """``<name>_paused{reason="database"}``: 1 while the worker holds its messages because its
    database does not take writes (workers/handling.py), read at scrape time in the worker's
    main process from the worker's pause marker: a pool process killed while paused leaves no
    stale value behind (its own multiprocess file would)."""

    def __init__(self, subscriber) -> None:
        self.subscriber = subscriber

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from workers import handling

        family = GaugeMetricFamily(
            f"{self.subscriber.name}_paused",
            f"1 while the {self.subscriber.name} worker holds its messages because its database "
            "does not take writes (it takes no new ones).", labels=["reason"])
        family.add_metric(["database"], 1 if handling.pause_state(self.subscriber) else 0)
        yield family
