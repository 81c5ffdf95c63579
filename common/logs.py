"""One LOGGING dict for every process of both projects: plain text for people, or one JSON
object per line for log shippers (``<PREFIX>_LOG_FORMAT=json``). Either way each record
carries ``trace_id`` (see ``common.trace``)."""

from __future__ import annotations

from typing import Any

FORMATS = ("plain", "json")

# The record attributes every JSON line has; ``extra`` fields of a log call are added as keys.
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(trace_id)s %(message)s"


def logging_config(*, level: str, fmt: str, quiet: dict[str, str] | None = None) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}: {fmt!r}")
    loggers = {"amqp": {"level": "WARNING"}, "kombu": {"level": "WARNING"}}
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
