"""The admin's Celery app. The admin never runs a worker and never imports catalog code:
the relay uses this app only to publish task messages by name (see product_events.contract)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "admin_project.settings.local")

app = Celery("admin_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
