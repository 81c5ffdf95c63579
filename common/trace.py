"""One trace id follows a product change across processes.

The admin's HTTP request gets one (the caller's ``X-Request-ID`` if it is sane, else a new one;
echoed in the response). It is written into the event envelope (``trace_id``), so it is in the
outbox row, the relay's log line, the Celery task's arguments (Flower), the worker's log line and
the catalog row (``last_trace_id``). Every log record carries the current one as ``trace_id``.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

HEADER = "X-Request-ID"
_META_KEY = "HTTP_X_REQUEST_ID"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)


def trace_id_get() -> str | None:
    return _current.get()


def trace_id_set(trace_id: str | None) -> contextvars.Token:
    return _current.set(trace_id)


def trace_id_new() -> str:
    return uuid.uuid4().hex


def trace_id_accept(candidate: str | None) -> str:
    """The caller's id when it is a plausible one (no log injection), else a new one."""
    if candidate and _SANE.match(candidate):
        return candidate
    return trace_id_new()


class TraceIdMiddleware:
    """Django middleware: sets the trace id for the request and returns it as X-Request-ID."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        trace_id = trace_id_accept(request.META.get(_META_KEY))
        request.trace_id = trace_id  # for records logged after this returns (django.request)
        token = _current.set(trace_id)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response[HEADER] = trace_id
        return response


class TraceIdFilter(logging.Filter):
    """Adds ``record.trace_id`` (the current one, or "-") unless the call gave one in ``extra``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            # Django logs a 4xx/5xx ("Not Found: ...") after the middleware returned: the
            # request it passes along still has its id
            record.trace_id = (_current.get()
                               or getattr(getattr(record, "request", None), "trace_id", None)
                               or "-")
        return True
