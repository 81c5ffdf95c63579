"""How every subscriber's task handles a message of product events (the catalog's task in
workers/tasks.py, the audit log's in workers/audit_tasks.py): validate each event against the
contract, park the invalid ones with their reason, apply the valid ones in one call of the
subscriber's ``apply`` function, retry transient database errors with backoff through the
subscriber's private exchange, and park what can never succeed."""

from __future__ import annotations

import logging
import random

from celery.exceptions import Reject
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

from common.trace import trace_id_set
from product_events import contract
from workers import metrics, parking
from workers.confirming import confirming_producer

logger = logging.getLogger("workers.handling")
contract.schema_validator()  # compile the JSON Schema once, before the pool forks

# Worth retrying: the database is unavailable or the connection broke.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


def retry_countdown(retries: int) -> int:
    """Exponential backoff with jitter ("equal jitter": half fixed, half random), capped, and at
    least 1 s (native delayed delivery on quorum queues needs whole seconds >= 1)."""
    cap = min(settings.CATALOG_RETRY_BACKOFF_MAX, settings.CATALOG_RETRY_BACKOFF_BASE * 2**retries)
    return max(1, round(cap / 2 + random.uniform(0, cap / 2)))


def product_events_handle(self, events, unexpected, *, apply):
    """The body of a bound task ``self`` receiving ``events``. ``apply(events=[ProductEvent])``
    writes valid events in one transaction and returns an object with ``applied``, ``stale``
    and ``applied_events``. Invalid events are parked in the subscriber's dead-letter queue with
    their reason. Transient database errors retry with backoff; once the retry budget is spent
    the batch is parked."""
    app = self.app
    if unexpected or not isinstance(events, list) or not events:
        reason = ("invalid task arguments: expected kwargs {'events': [<envelope>, ...]}, got "
                  f"events={type(events).__name__} and extra {sorted(unexpected)}")
        logger.error("parking message %s: %s", self.request.id, reason)
        metrics.dead_lettered(1, kind="message")
        raise Reject(reason, requeue=False)  # the whole message goes to the DLQ as it is

    valid, invalid = [], []
    for raw in events:
        try:
            valid.append(contract.envelope_validate(raw))
        except contract.InvalidEvent as exc:
            invalid.append((raw, str(exc)))
    trace_ids = sorted({ev.trace_id for ev in valid if ev.trace_id})
    trace_id_set(trace_ids[0] if len(trace_ids) == 1 else None)  # this task's log lines

    try:
        result = apply(events=valid)
    except TRANSIENT_ERRORS as exc:
        _close_broken_db_connections()
        if invalid:  # park the bad ones now; retry only the good ones
            parking.park_events(app=app, request=self.request, items=invalid)
        good = [ev.as_dict() for ev in valid]
        if self.request.retries >= settings.CATALOG_RETRY_MAX:
            reason = (f"retry budget spent ({self.request.retries} retries): "
                      f"{type(exc).__name__}: {exc}")
            parking.park_events(app=app, request=self.request,
                                items=[(ev, reason) for ev in good])
            return {"applied": 0, "stale": 0, "parked": len(good) + len(invalid)}
        countdown = retry_countdown(self.request.retries)
        metrics.retried()
        logger.warning("transient error applying %d events (%s); retry %d in %ds",
                       len(good), exc, self.request.retries + 1, countdown)
        with confirming_producer(app) as producer:  # sent and confirmed, or this raises
            retry = self.retry(kwargs=contract.task_kwargs(good), exc=exc, countdown=countdown,
                               queue=app.subscriber.queue, producer=producer, throw=False,
                               kwargsrepr=contract.task_summary(good))
        raise retry from exc
    except Exception as exc:  # noqa: BLE001
        # A permanent error (a value the database or its driver rejects, ...). Find the culprits
        # one by one so that the good events of this batch still land.
        return _apply_one_by_one(self, valid, invalid, first_error=exc, apply=apply)

    _applied(result, trace_ids)
    if invalid:
        parking.park_events(app=app, request=self.request, items=invalid)
    return {"applied": result.applied, "stale": result.stale, "parked": len(invalid)}


def _applied(result, trace_ids) -> None:
    """Metrics, and one log line per batch naming what changed and the trace id(s)."""
    metrics.applied(result.applied_events, result.stale)
    if logger.isEnabledFor(logging.INFO):
        logger.info("applied %d, stale %d: %s", result.applied, result.stale,
                    contract.task_summary([ev.as_dict() for ev in result.applied_events]),
                    extra={"trace_ids": trace_ids[:100]})


def _apply_one_by_one(task, valid, invalid, first_error, apply):
    logger.warning("batch failed (%s); applying its %d events one by one", first_error, len(valid))
    applied = stale = 0
    for event in valid:
        try:
            result = apply(events=[event])
        except TRANSIENT_ERRORS:
            raise  # give up this pass: the task fails, the message is dead-lettered whole
        except Exception as exc:  # noqa: BLE001
            reason = f"cannot be stored: {type(exc).__name__}: {exc}".strip()
            invalid.append((event.as_dict(), reason))
            continue
        applied += result.applied
        stale += result.stale
        _applied(result, [event.trace_id] if event.trace_id else [])
    if invalid:
        parking.park_events(app=task.app, request=task.request, items=invalid)
    return {"applied": applied, "stale": stale, "parked": len(invalid)}


def _close_broken_db_connections() -> None:
    for conn in connections.all():
        conn.close_if_unusable_or_obsolete()
