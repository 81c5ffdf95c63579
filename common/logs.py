"""One LOGGING dict for every process of both projects: plain text for people, or one JSON
object per line for log shippers (``<PREFIX>_LOG_FORMAT=json``). Either way each record
carries ``trace_id`` (see ``common.trace``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

FORMATS = ("plain", "json")

# The record attributes every JSON line has; ``extra`` fields of a log call are added as keys.
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(trace_id)s %(message)s"


def logging_config(*, level: str, fmt: str, quiet: dict[str, str] | None = None) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}: {fmt!r}")
    # Python's warnings (a library's DeprecationWarning, Celery's "running as root") are log
    # records too: in the chosen format, not plain lines on stderr
    logging.captureWarnings(True)
    loggers = {"amqp": {"level": "WARNING"}, "kombu": {"level": "WARNING"},
               # Django's default handlers (a plain console one under DEBUG, mail_admins) go:
               # its records reach the root handler, in this format, once
               "django": {"level": "INFO", "handlers": [], "propagate": True}}
    loggers.update({name: {"level": lvl} for name, lvl in (quiet or {}).items()})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"trace_id": {"()": "common.trace.TraceIdFilter"}},
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d] "
                                "[%(trace_id)s] %(message)s"},
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "format": JSON_FIELDS,
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                "timestamp": False,
            },
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": fmt,
                                 "filters": ["trace_id"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": loggers,
    }


class AccessLogFields(logging.Filter):
    """gunicorn's access records: the request as fields (``method``, ``path``, ``status``,
    ``duration_ms``, ``remote``, ``bytes``; keys of a JSON line) and its trace id, read from the
    response's ``X-Request-ID`` (the request's own context is gone when gunicorn logs it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        if isinstance(atoms, Mapping):
            trace_id = atoms["{x-request-id}o"]
            if trace_id and trace_id != "-":
                record.trace_id = trace_id
            record.method, record.path, record.status = atoms["m"], atoms["U"], atoms["s"]
            record.remote, record.bytes = atoms["h"], atoms["B"]
            try:
                record.duration_ms = round(int(atoms["D"]) / 1000, 3)
            except (TypeError, ValueError):
                pass
        return True


def gunicorn_logging_config(*, level: str, fmt: str) -> dict[str, Any]:
    """``logconfig_dict`` for gunicorn: its own lines (``gunicorn.error``) and access lines
    (``gunicorn.access``) in the same format as the application's, with trace ids."""
    config = logging_config(level=level, fmt=fmt)
    config["filters"]["access"] = {"()": "common.logs.AccessLogFields"}
    config["loggers"].update({
        "gunicorn.error": {"level": level, "handlers": ["console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False,
                            "filters": ["access"]},
    })
    return config


def json_line(message: str, *, logger: str, level: str = "INFO") -> str:
    """One line as the JSON formatter writes a record, for text that is printed rather than
    logged (a console notice, a supervisor's line): same keys, so a log shipper reads it."""
    import json
    import os
    from datetime import datetime

    return json.dumps({"time": datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3],
                       "level": level, "logger": logger, "process": os.getpid(),
                       "trace_id": "-", "message": message})
