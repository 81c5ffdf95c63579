"""The catalog's Celery app: the first subscriber of the product bus.

    celery -A workers.catalog worker -l INFO          # consume product events
    celery -A workers.catalog flower --basic-auth=...  # monitor

Django and Celery settings are the catalog project's (``CELERY_*`` in catalog_project/settings);
its retry policy (``CATALOG_RETRY_*``, ``CATALOG_PAUSE_HOLD_SECONDS``) and its metrics exporter
(``CATALOG_WORKER_METRICS_BIND``; ``catalog_events_*``, counted in the pool processes, served by
the main process) are its own. The task applies each batch idempotently, ordered by version
(``catalog_project.catalog.services.product_events_apply``)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_project.settings.local")

from catalog_project import topology  # noqa: E402
from catalog_project.settings.base import env  # noqa: E402
from workers.subscriber import subscriber_app  # noqa: E402

app = subscriber_app(topology.CATALOG, env=env, prefix="CATALOG",
                     apply="catalog_project.catalog.services.product_events_apply",
                     metrics_bind="127.0.0.1:9102")
