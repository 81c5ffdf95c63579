"""The catalog's Celery app.

    celery -A workers.catalog worker -l INFO          # consume product events
    celery -A workers.catalog flower --basic-auth=...  # monitor
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_project.settings.local")

from workers import metrics, topology  # noqa: E402

app = Celery("catalog", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
topology.CATALOG.celery_configure(app)


# Prometheus: catalog_events_* counted in the pool processes, served by this (parent) process.
metrics.worker_metrics(app, name="catalog", bind="CATALOG_WORKER_METRICS_BIND")
