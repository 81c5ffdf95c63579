"""Prometheus metrics, multi-process aware.

Gunicorn workers and Celery prefork children are separate processes, so their metrics go through
prometheus_client's multiprocess mode: each process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` and the scrape aggregates them. The directory is prepared (created,
or emptied) by the parent process before it forks: ``multiprocess_prepare()`` from the gunicorn
config (``common.gunicorn_conf``) and from the worker's ``celeryd_init`` signal.
Single-process programs (the relay) use the default registry.

Scrape-time collectors (outbox backlog, queue depths) query their source on each scrape: a value
that is read, not counted, needs no cross-process bookkeeping."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from importlib import import_module

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import values as _values

logger = logging.getLogger("common.metrics")
ENV = "PROMETHEUS_MULTIPROC_DIR"


_created: dict[str, int] = {}  # directory made here -> pid of the process that made it
_DIR_RE = re.compile(r".+-metrics-pid(\d+)-[^/]+")


def multiprocess_prepare(prefix: str) -> str:
    """Use a private, empty directory for this process tree's metric files (call before fork).
    A directory given in PROMETHEUS_MULTIPROC_DIR is emptied; otherwise a temporary one is made
    (``multiprocess_cleanup`` removes it when the parent stops)."""
    path = os.environ.get(ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
    else:
        _stale_dirs_remove()
        path = tempfile.mkdtemp(prefix=f"{prefix}-metrics-pid{os.getpid()}-")
        os.environ[ENV] = path
        _created[path] = os.getpid()
    # Metrics built from now on write to files, even if prometheus_client was imported earlier.
    _values.ValueClass = _values.get_value_class()
    return path


def _stale_dirs_remove() -> None:
    """Remove the directories of process trees whose parent is gone without cleaning up (killed
    with SIGKILL): the name carries the parent's pid. A pid in use again keeps its directory."""
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        match = _DIR_RE.fullmatch(name)
        if not match:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
        except OSError:  # alive, owned by another user
            pass


def multiprocess_cleanup() -> None:
    """Remove the directory ``multiprocess_prepare`` made, if this is the process that made it
    (never from a forked child, which would pull it from under its siblings)."""
    path = os.environ.get(ENV, "")
    if _created.get(path) == os.getpid():
        shutil.rmtree(path, ignore_errors=True)


def process_dead(pid: int) -> None:
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def scrape_registry(extra_collectors=()) -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    for collector in extra_collectors:
        registry.register(collector)
    return registry


class _Forward:
    """Exposes another registry's metrics (the default one) inside a per-scrape registry."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        return self.registry.collect()


def _collectors_from_settings():
    from django.conf import settings

    out = []
    for dotted in getattr(settings, "METRICS_COLLECTORS", []):
        module, _, name = dotted.rpartition(".")
        out.append(getattr(import_module(module), name)())
    return out


# one rendering of /metrics per process is served for this long: a flood of scrapes (the page
# is ~80 KB of every gunicorn worker's series, read from the multiprocess files) costs a copy,
# not a rendering each, and cannot starve the API
METRICS_CACHE_SECONDS = 1.0
_rendered: tuple[float, bytes] | None = None
_render_lock = threading.Lock()


def metrics_view(request):
    """Django view for ``/metrics``: this app's process metrics plus its scrape-time collectors
    (rendered at most once per METRICS_CACHE_SECONDS per process)."""
    from django.http import HttpResponse

    global _rendered
    with _render_lock:
        now = time.monotonic()
        if _rendered is None or now - _rendered[0] > METRICS_CACHE_SECONDS:
            registry = scrape_registry(_collectors_from_settings())
            _rendered = (time.monotonic(), generate_latest(registry))
        body = _rendered[1]
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def exporter_start(bind: str, extra_collectors=()) -> bool:
    """Serve /metrics on ``host:port`` from a daemon thread (relay, worker), with
    ``extra_collectors`` (read at scrape time in this process). Empty ``bind`` disables it. A
    port in use is logged, never fatal: metrics must not stop event delivery."""
    if not bind:
        return False
    from prometheus_client import start_http_server

    host, _, port = bind.rpartition(":")
    try:
        start_http_server(int(port), addr=host or "0.0.0.0",
                          registry=scrape_registry(extra_collectors))
    except OSError as exc:
        logger.error("metrics exporter not started on %s: %s", bind, exc)
        return False
    logger.info("metrics on http://%s/metrics", bind)
    return True
