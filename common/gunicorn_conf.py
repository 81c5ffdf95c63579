"""Gunicorn hooks for Prometheus multiprocess metrics:
``gunicorn -c python:common.gunicorn_conf ...``. The master prepares an empty metrics
directory before forking workers; a dead worker's live gauges are dropped."""

from common import metrics


def on_starting(server):
    metrics.multiprocess_prepare(prefix=server.proc_name or "gunicorn")


def child_exit(server, worker):
    metrics.process_dead(worker.pid)


def on_exit(server):
    metrics.multiprocess_cleanup()
