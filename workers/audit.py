"""The audit log's Celery app: the second subscriber of the product bus (docs/extending.md).

    celery -A workers.audit worker -l INFO -c 1 -n audit@%h

It binds its own queue, ``audit.products``, to the ``products`` exchange with its own pattern
(``product.*``), so it receives every product event independently of the catalog: each
subscriber at its own pace, a stopped one only lets its own queue grow. It stores into the
catalog's database (app ``catalog_project.audit``) to keep the example small; a real third
service would have its own settings and database the same way."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_project.settings.local")

from workers import metrics  # noqa: E402
from workers.topology import AUDIT  # noqa: E402

app = Celery("audit", include=["workers.audit_tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
AUDIT.celery_configure(app)
# Prometheus: audit_events_* (applied, stale, dead-lettered, retries, lag) on their own port.
metrics.worker_metrics(app, name="audit", bind="AUDIT_WORKER_METRICS_BIND")
