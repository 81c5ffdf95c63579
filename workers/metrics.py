"""The catalog worker's Prometheus metrics. Counted in the prefork children (and the parent,
for messages parked before they become tasks) through prometheus_client's multiprocess mode;
served by the parent on CATALOG_WORKER_METRICS_BIND (see workers/catalog.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from prometheus_client import Counter, Histogram


@cache
def _m():
    # Built on first use: after workers/catalog.py switched prometheus_client to multiprocess
    # mode, and in the process that counts (each writes its own file).
    return {
        "applied": Counter("catalog_events_applied", "Events that changed the catalog."),
        "stale": Counter("catalog_events_stale",
                         "Events ignored as duplicates or older than the stored version."),
        "dead_lettered": Counter("catalog_events_dead_lettered",
                                 "Events or messages parked in the dead-letter queue.",
                                 ["kind"]),
        "retries": Counter("catalog_task_retries",
                           "Batches scheduled for a retry after a transient error."),
        "lag": Histogram("catalog_event_lag_seconds",
                         "From the change in the admin (occurred_at) to applied in the catalog.",
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
