"""The audit log's Celery app: the second subscriber of the product bus (docs/extending.md).

    celery -A workers.audit worker -l INFO -c 1 -n audit@%h

It binds its own queue, ``audit.products``, to the ``products`` exchange with its own pattern
(``product.*``), so it receives every product event independently of the catalog: each
subscriber at its own pace, a stopped one only lets its own queue grow. It stores into the
catalog's database (app ``catalog_project.audit``) to keep the example small, so it runs with
the catalog's Django settings; its own retry policy and metrics exporter are read here. A real
third service would have its own settings and database the same way."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_project.settings.local")

from catalog_project import topology  # noqa: E402
from catalog_project.settings.base import env  # noqa: E402
from workers.subscriber import RetryPolicy, Subscriber  # noqa: E402

AUDIT = Subscriber(
    topology.AUDIT,
    retry=RetryPolicy.from_env(env, "AUDIT"),  # AUDIT_RETRY_MAX, _BACKOFF_BASE, _BACKOFF_MAX
    # Prometheus audit_events_* (applied, stale, dead-lettered, retries, lag).
    metrics_bind=env("AUDIT_WORKER_METRICS_BIND", default="127.0.0.1:9103"),
)

app = Celery("audit", include=["workers.audit_tasks"],
             task_cls="workers.handling:ProductEventsTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
AUDIT.configure(app)
