"""Flower's config file (``celery -A workers.catalog flower --conf=workers/flowerconfig.py``).

Flower serves ``/metrics`` (Prometheus) without authentication even when ``--basic-auth`` is
set; it names every worker and task. Put it behind the same auth as the rest of Flower.
(``/healthcheck`` stays open: it says only "OK".)"""

from flower.views.monitor import Metrics
from tornado import web

if not getattr(Metrics.get, "auth_required", False):
    Metrics.get = web.authenticated(Metrics.get)
    Metrics.get.auth_required = True
