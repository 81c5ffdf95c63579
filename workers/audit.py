"""The audit log's Celery app: the second subscriber of the product bus (docs/extending.md).

    celery -A workers.audit worker -l INFO -c 1 -n audit@%h

It binds its own queue, ``audit.products``, to the ``products`` exchange with its own pattern
(``product.*``), so it receives every product event independently of the catalog: each
subscriber at its own pace, a stopped one only lets its own queue grow. It stores into the
catalog's database (app ``catalog_project.audit``) to keep the example small, so it runs with
the catalog's Django settings. Its retry policy (``AUDIT_RETRY_*``, ``AUDIT_PAUSE_HOLD_SECONDS``)
and metrics exporter (``AUDIT_WORKER_METRICS_BIND``; ``audit_events_*``) are its own."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_project.settings.local")

from catalog_project import topology  # noqa: E402
from catalog_project.settings.base import env  # noqa: E402
from workers.subscriber import subscriber_app  # noqa: E402

app = subscriber_app(topology.AUDIT, env=env, prefix="AUDIT",
                     apply="catalog_project.audit.services.product_changes_record",
                     metrics_bind="127.0.0.1:9103")
