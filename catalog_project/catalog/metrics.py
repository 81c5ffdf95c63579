"""Catalog metrics read at scrape time: the queue depths of every subscriber (catalog, audit),
straight from the broker. The worker's counters (applied, stale, dead-lettered, lag) are on the
worker's own exporter."""

import logging

from prometheus_client.core import GaugeMetricFamily

from catalog_project.topology import SUBSCRIBERS
from common.health import CHECK_TIMEOUT, broker_url

logger = logging.getLogger("catalog_project.metrics")


def queue_depths() -> dict[str, int]:
    """Ready messages per queue (a passive declare: creates nothing)."""
    from kombu import Connection

    depths = {}
    with Connection(broker_url(), connect_timeout=CHECK_TIMEOUT) as conn:
        for name in [q for sub in SUBSCRIBERS.values() for q in (sub.queue_name, sub.dlq_name)]:
            channel = conn.channel()
            try:
                depths[name] = channel.queue_declare(queue=name, passive=True).message_count
            except Exception as exc:  # noqa: BLE001 - not declared yet: no sample
                logger.debug("queue %s: %s", name, exc)
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001
                    pass
    return depths


class CatalogCollector:
    def collect(self):
        depth = GaugeMetricFamily("catalog_queue_messages",
                                  "Messages ready in each subscriber's queue and DLQ "
                                  "(catalog, audit; a DLQ holds parked messages).",
                                  labels=["queue"])
        up = GaugeMetricFamily("catalog_broker_up", "1 if the broker answered this scrape.")
        try:
            for name, n in queue_depths().items():
                depth.add_metric([name], n)
            up.add_metric([], 1)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the broker
            logger.warning("queue depths unavailable: %s", exc)
            up.add_metric([], 0)
        yield depth
        yield up
