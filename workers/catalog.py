"""The catalog's Celery app.

    celery -A workers.catalog worker -l INFO          # consume product events
    celery -A workers.catalog flower --basic-auth=...  # monitor
"""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_project.settings.local")

from workers import topology  # noqa: E402

app = Celery("catalog", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
topology.CATALOG.celery_configure(app)


# --- Prometheus metrics: children count into files, this (parent) process serves them. ---
@signals.celeryd_init.connect
def _metrics_prepare(**_kwargs):
    from common import metrics

    metrics.multiprocess_prepare(prefix="catalog-worker")


@signals.worker_ready.connect
def _metrics_serve(**_kwargs):
    from django.conf import settings

    from common import metrics

    metrics.exporter_start(settings.CATALOG_WORKER_METRICS_BIND)


@signals.worker_shutdown.connect
def _metrics_cleanup(**_kwargs):
    from common import metrics

    metrics.multiprocess_cleanup()
