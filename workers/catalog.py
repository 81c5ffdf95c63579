"""The catalog's Celery app.

    celery -A workers.catalog worker -l INFO          # consume product events
    celery -A workers.catalog flower --basic-auth=...  # monitor

Django and Celery settings are the catalog project's (``CELERY_*`` in catalog_project/settings);
what only this worker reads, its retry policy and metrics exporter, is read here."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_project.settings.local")

from catalog_project import topology  # noqa: E402
from catalog_project.settings.base import env  # noqa: E402
from workers.subscriber import RetryPolicy, Subscriber  # noqa: E402

CATALOG = Subscriber(
    topology.CATALOG,
    retry=RetryPolicy.from_env(env, "CATALOG"),  # CATALOG_RETRY_MAX, _BACKOFF_BASE, _BACKOFF_MAX
    # Prometheus catalog_events_*: counted in the pool processes, served by the main process.
    metrics_bind=env("CATALOG_WORKER_METRICS_BIND", default="127.0.0.1:9102"),
)

app = Celery("catalog", include=["workers.tasks"], task_cls="workers.handling:ProductEventsTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
CATALOG.configure(app)
