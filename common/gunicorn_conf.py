"""Gunicorn settings and hooks for both web apps: ``gunicorn -c python:common.gunicorn_conf ...``.

* Logs: gunicorn's own lines and its access lines in the project's format
  (``<PREFIX>_LOG_FORMAT``: plain or one JSON object per line), each access line with the
  request's trace id (common/logs.py).
* Prometheus multiprocess metrics: the master prepares an empty metrics directory before forking
  workers; a dead worker's live gauges are dropped."""

import os
import sys

from common import metrics
from common.logs import gunicorn_logging_config

# which project this gunicorn serves: its WSGI module is on the command line
_PREFIX = "ADMIN" if any(a.startswith("admin_project") for a in sys.argv) else "CATALOG"
# how long a request may take before the worker is killed (gunicorn's default, 30); the
# request's database waits end 5 s before it (common/settings.py web_db_deadline)
timeout = int(float(os.environ.get(f"{_PREFIX}_WEB_TIMEOUT_SECONDS") or 30))
logconfig_dict = gunicorn_logging_config(
    level=os.environ.get(f"{_PREFIX}_LOG_LEVEL", "INFO").upper() or "INFO",
    fmt=os.environ.get(f"{_PREFIX}_LOG_FORMAT", "plain") or "plain")


def on_starting(server):
    metrics.multiprocess_prepare(prefix=server.proc_name or "gunicorn")


def child_exit(server, worker):
    metrics.process_dead(worker.pid)


def on_exit(server):
    metrics.multiprocess_cleanup()
