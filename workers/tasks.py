"""Catalog tasks: thin. Validation is the contract's, writes are the catalog services'."""

from __future__ import annotations

import logging
import random

from celery.exceptions import Reject
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

from common.trace import trace_id_set
from product_events import contract
from workers import metrics, parking, topology
from workers.catalog import app

logger = logging.getLogger("workers.tasks")
contract.schema_validator()  # compile the JSON Schema once, before the pool forks

# Worth retrying: the database is unavailable or the connection broke.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


def retry_countdown(retries: int) -> int:
    """Exponential backoff with jitter ("equal jitter": half fixed, half random), capped, and at
    least 1 s (native delayed delivery on quorum queues needs whole seconds >= 1)."""
    cap = min(settings.CATALOG_RETRY_BACKOFF_MAX, settings.CATALOG_RETRY_BACKOFF_BASE * 2**retries)
    return max(1, round(cap / 2 + random.uniform(0, cap / 2)))


@app.task(name=contract.TASK_APPLY_PRODUCT_EVENTS, bind=True, acks_late=True,
          max_retries=None, ignore_result=True)
def apply_product_events(self, events=None, **unexpected):
    """Apply a batch of product events. Invalid events are parked in the dead-letter queue with
    their reason; the valid ones are applied in one transaction. Transient database errors retry
    with backoff; once the retry budget is spent the batch is parked."""
    if unexpected or not isinstance(events, list) or not events:
        reason = ("invalid task arguments: expected kwargs {'events': [<envelope>, ...]}, got "
                  f"events={type(events).__name__} and extra {sorted(unexpected)}")
        logger.error("parking message %s: %s", self.request.id, reason)
        metrics.dead_lettered(1, kind="message")
        raise Reject(reason, requeue=False)  # the whole message goes to the DLQ as it is

    from catalog_project.catalog.services import product_events_apply

    valid, invalid = [], []
    for raw in events:
        try:
            valid.append(contract.envelope_validate(raw))
        except contract.InvalidEvent as exc:
            invalid.append((raw, str(exc)))
    trace_ids = sorted({ev.trace_id for ev in valid if ev.trace_id})
    trace_id_set(trace_ids[0] if len(trace_ids) == 1 else None)  # this task's log lines

    try:
        result = product_events_apply(events=valid)
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
        raise self.retry(kwargs=contract.task_kwargs(good), exc=exc, countdown=countdown,
                         queue=topology.catalog_queue,
                         kwargsrepr=contract.task_summary(good)) from exc
    except Exception as exc:  # noqa: BLE001
        # A permanent error (a value the database or its driver rejects, ...). Find the culprits
        # one by one so that the good events of this batch still land.
        return _apply_one_by_one(self, valid, invalid, first_error=exc)

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


def _apply_one_by_one(task, valid, invalid, first_error):
    from catalog_project.catalog.services import product_events_apply

    logger.warning("batch failed (%s); applying its %d events one by one", first_error, len(valid))
    applied = stale = 0
    for event in valid:
        try:
            result = product_events_apply(events=[event])
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
        parking.park_events(app=app, request=task.request, items=invalid)
    return {"applied": applied, "stale": stale, "parked": len(invalid)}


def _close_broken_db_connections() -> None:
    for conn in connections.all():
        conn.close_if_unusable_or_obsolete()
