"""The catalog's Celery app.

    celery -A workers.catalog worker -l INFO          # consume product events
    celery -A workers.catalog flower --basic-auth=...  # monitor
"""

import logging
import os

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_project.settings.local")

from workers import topology  # noqa: E402

logger = logging.getLogger("workers.catalog")

app = Celery("catalog", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [topology.catalog_queue]
app.conf.task_default_queue = topology.catalog_queue.name
app.conf.task_default_exchange = topology.catalog_exchange.name
app.conf.task_default_exchange_type = topology.catalog_exchange.type
app.conf.task_default_routing_key = topology.catalog_queue.routing_key


class DeclareTopology(bootsteps.StartStopStep):
    """Declare the whole topology (bus binding, DLQ) each time the consumer (re)connects,
    before consuming starts."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c):
        try:
            with c.app.connection_for_write() as conn:
                topology.topology_declare(conn.default_channel)
        except topology.TopologyMismatch as exc:
            logger.critical("%s", exc.code)
            raise
        logger.info("broker topology declared: %s bound to %s (%s), dead letters to %s",
                    topology.catalog_queue.name, topology.products_exchange.name,
                    topology.bus_binding.routing_key, topology.dead_letter_queue.name)


app.steps["consumer"].add(DeclareTopology)
