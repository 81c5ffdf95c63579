"""Catalog metrics read at scrape time, straight from the broker: for every subscriber's queue
and DLQ (catalog, audit) whether it exists, its ready messages and its consumers. The worker's
counters (applied, stale, dead-lettered, lag) are on the worker's own exporter."""

import logging

from prometheus_client.core import GaugeMetricFamily

from catalog_project.catalog.queues import queue_states
from common.health import CHECK_TIMEOUT, broker_url

logger = logging.getLogger("catalog_project.metrics")


class CatalogCollector:
    def collect(self):
        from kombu import Connection

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
        up = GaugeMetricFamily("catalog_broker_up", "1 if the broker answered this scrape.")
        try:
            with Connection(broker_url(), connect_timeout=CHECK_TIMEOUT) as conn:
                states = [s for s in queue_states(conn) if s.role != "holding"]
            for s in states:
                labels = [s.subscriber, s.queue, s.role]
                present.add_metric(labels, 1 if s.present else 0)
                if s.present:
                    depth.add_metric([s.queue], s.messages)
                    consumers.add_metric(labels, s.consumers)
            up.add_metric([], 1)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the broker
            logger.warning("queue states unavailable: %s", exc)
            up.add_metric([], 0)
        yield depth
        yield present
        yield consumers
        yield up
