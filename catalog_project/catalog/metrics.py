"""Catalog metrics read at scrape time, straight from the broker: for every subscriber's queue
and DLQ (catalog, audit, ...) whether it exists, its ready messages and its consumers, and the
messages waiting in its delay queues for a retry. The worker's counters (applied, stale,
dead-lettered, lag) and the messages it holds unacknowledged (``<name>_messages_in_flight``)
are on the worker's own exporter."""

import logging

from prometheus_client.core import GaugeMetricFamily

from catalog_project.catalog.queues import delayed_messages, queue_states
from common.health import CHECK_TIMEOUT, Memo, broker_url, probe_ttl

logger = logging.getLogger("catalog_project.metrics")


def _queue_states():
    """The subscribers' queue states, or None if the broker did not answer (kept for
    PROBE_CACHE_SECONDS: scrapes in a burst open one broker connection per process)."""
    from kombu import Connection

    try:
        with Connection(broker_url(), connect_timeout=CHECK_TIMEOUT) as conn:
            return ([s for s in queue_states(conn) if s.role != "holding"],
                    delayed_messages(conn))
    except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the broker
        logger.warning("queue states unavailable: %s", exc)
        return None


_states = Memo(_queue_states, probe_ttl)


class CatalogCollector:
    def collect(self):
        depth = GaugeMetricFamily("catalog_queue_messages",
                                  "Messages ready in each subscriber's queue and DLQ "
                                  "(catalog, audit; a DLQ holds parked messages).",
                                  labels=["queue"])
        present = GaugeMetricFamily(
            "catalog_subscriber_queue_present",
            "1 if the subscriber's queue (role=queue) or DLQ (role=dlq) exists on the broker, "
            "0 if not. A missing role=queue queue silently misses every event published "
            "meanwhile: the relay's mandatory flag fails only when no subscriber's queue is "
            "bound.", labels=["subscriber", "queue", "role"])
        consumers = GaugeMetricFamily("catalog_subscriber_queue_consumers",
                                      "Consumers of each subscriber's queue and DLQ.",
                                      labels=["subscriber", "queue", "role"])
        delayed = GaugeMetricFamily(
            "catalog_subscriber_delayed_messages",
            "Messages waiting for a retry's countdown in each subscriber's delay queues "
            "(<name>_celery_delayed_*): in no queue-depth figure until their delay ends.",
            labels=["subscriber"])
        up = GaugeMetricFamily("catalog_broker_up", "1 if the broker answered this scrape.")
        found = _states.get()
        states, waiting = found if found is not None else (None, {})
        for name, n in waiting.items():
            delayed.add_metric([name], n)
        for s in states or []:
            labels = [s.subscriber, s.queue, s.role]
            present.add_metric(labels, 1 if s.present else 0)
            if s.present:
                depth.add_metric([s.queue], s.messages)
                consumers.add_metric(labels, s.consumers)
        up.add_metric([], 0 if states is None else 1)
        yield depth
        yield present
        yield consumers
        yield delayed
        yield up
