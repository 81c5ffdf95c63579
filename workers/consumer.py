"""The Celery Consumer of every subscriber's worker (the catalog's, the audit log's).

* On every (re)connect, before any step starts consuming, it declares the subscriber's broker
  topology (``app.subscriber.subscription``, see ``catalog_project/topology.py``). Doing it here
  rather than in a bootstep matters: bootstep order is not deterministic, and when Celery's own
  queue declaration meets a 406 it reconnects forever. A mismatch stops the worker with a message
  saying what differs and how to fix it.
* Messages Celery cannot even turn into a task are parked in the dead-letter queue with a reason,
  instead of being acked away (undecodable body: Celery's default) or rejected without one
  (unknown task, refused content type, malformed message). If that park's publish gets no
  confirm within its bounds (a broker alarm), the message is requeued after a pause instead
  (workers/confirming.py), never acked.
* Task events (Flower's) are published at most every ``EVENTS_FLUSH_SECONDS`` in one
  ``task.multi`` message, not once per turn of the consumer loop (which at web rates meant two
  publishes per task message); buffered ones are published before a shutdown, and carried over
  a reconnect (workers/events.py)."""

from __future__ import annotations

import logging
import time
import warnings

from amqp.exceptions import ConnectionError as AMQPConnectionError
from celery.concurrency.base import BasePool
from celery.exceptions import CPendingDeprecationWarning
from celery.utils.log import get_logger
from celery.worker.consumer import Consumer
from celery.worker.state import active_requests, reserved_requests
from vine import promise

from catalog_project.topology import TopologyMismatch, products_exchange
from product_events.broker import EVENTS_EXCHANGE, SharedExchangeMissing, exchange_ensure
from workers import confirming, parking, pool
from workers.preflight import task_message_problem

logger = get_logger("workers.consumer")
CLEANUP_CONNECTION_ERRORS = (OSError, AMQPConnectionError)  # socket and AMQP-level losses

# At most this long between a task's event and its publish (Flower's view lags by as much). When
# the loop's own "received" finds 24 buffered, Celery publishes them at once; a task thread's
# "succeeded" only asks (workers/events.py), so the buffer holds about this long's events. Per
# turn of the loop, at 200 events/s of web load, a task message cost the worker and the broker
# two more publishes (docs/performance.md).
EVENTS_FLUSH_SECONDS = 0.1


class _LoopCleanupLine(logging.Filter):
    """After a lost connection Celery's event loop resets its hub, which may read the dead
    socket once more and log "Error cleaning up after event loop" as an error with a traceback
    (celery/worker/loops.py). With a connection error that is the loss already reported: a
    warning line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and str(record.msg).startswith("Error cleaning up after event loop") \
                and isinstance(exc, CLEANUP_CONNECTION_ERRORS):
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("celery.worker.loops").addFilter(_LoopCleanupLine())


class SubscriberConsumer(Consumer):
    class Blueprint(Consumer.Blueprint):
        # Without Celery's native delayed delivery step: it declares and binds the shared
        # `celery_delayed_*` queues, which any subscriber could then read or purge. Each
        # subscriber declares its own copy instead (catalog_project/topology.py) and retries
        # through it (workers/handling.py).
        default_steps = [step for step in Consumer.Blueprint.default_steps
                         if not step.endswith(":DelayedDelivery")]

    _events_flush_asked: float | None = None  # monotonic time; None once flushed

    def on_send_event_buffered(self):
        """Celery flushes the task events at the loop's next turn; this, once per
        ``EVENTS_FLUSH_SECONDS``. Called from any thread: the timer is set on the loop's. A flush
        asked for more than a second ago and not done (its timer lost to a reconnect) is asked
        for again, so events never wait longer than that."""
        asked = self._events_flush_asked
        if self.hub and (asked is None or time.monotonic() - asked > 1.0):
            self._events_flush_asked = time.monotonic()
            self.hub.call_soon(self._events_flush_schedule)

    def _events_flush_schedule(self):
        self.timer.call_after(EVENTS_FLUSH_SECONDS, self._events_flush)

    def _events_flush(self):
        self._events_flush_asked = None  # before the flush: an event sent during it asks again
        self._flush_events()

    def shutdown(self):
        """Publish the task events still buffered while their connection is open (the Events
        step closes it without a flush)."""
        try:
            self._flush_events()
        except Exception:  # noqa: BLE001 - a broker gone; shutting down anyway
            logger.warning("could not publish the last task events", exc_info=True)
        super().shutdown()

    def on_connection_error_after_connected(self, exc):
        """Celery's, except where the pool cannot stop a running task (threads: Celery's and
        workers/pool.py). There Celery's cancel on connection loss
        (``worker_cancel_long_running_tasks_on_connection_loss``, on in the settings: with
        prefork it kills the pool processes running them) logged per task that it terminates
        it, which it did not, and a 40-line traceback ("does not implement kill_job"). Such a
        task finishes the write it is in, or stops at its next retry (``DeliveryLost``,
        workers/handling.py); its ack or reject has no connection to go on, and the broker
        delivers its message again (the write is idempotent): one warning line says so."""
        pool.connection_lost()
        # (prefork sets its own terminate_job on the instance when it starts)
        if getattr(self.pool.terminate_job, "__func__", None) is not BasePool.terminate_job:
            return super().on_connection_error_after_connected(exc)
        running = sum(1 for request in tuple(active_requests)
                      if request.task.acks_late and not request.acknowledged)
        in_hand = sum(1 for request in tuple(reserved_requests)
                      if request.task.acks_late and not request.acknowledged)
        conf = self.app.conf
        cancel = conf.worker_cancel_long_running_tasks_on_connection_loss
        conf.worker_cancel_long_running_tasks_on_connection_loss = False
        try:
            with warnings.catch_warnings():
                # Celery's notice that cancelling will become the default: it is set, and
                # this pool cannot cancel
                warnings.simplefilter("ignore", CPendingDeprecationWarning)
                super().on_connection_error_after_connected(exc)
        finally:
            conf.worker_cancel_long_running_tasks_on_connection_loss = cancel
        if in_hand:
            logger.warning("broker connection lost with %d message(s) in hand, %d of them "
                           "running: the broker delivers them again (the write is idempotent); "
                           "a running one finishes its write or stops at its next retry (a "
                           "thread cannot be stopped), the others stop before they start",
                           in_hand, running)

    def connect(self):
        conn = super().connect()
        subscription = self.app.subscriber.subscription
        channel = conn.channel()
        try:
            subscription.declare(channel)
            exchange_ensure(conn, EVENTS_EXCHANGE)
        except (TopologyMismatch, SharedExchangeMissing) as exc:
            logger.critical("%s", exc)
            conn.release()
            # Stop the worker (no traceback): consuming from a queue that is not the one
            # declared here would break the delivery limit and dead-lettering it relies on.
            raise SystemExit(str(exc)) from None
        finally:
            try:
                channel.close()
            except Exception:  # noqa: BLE001 - a 406 already closed it
                pass
        logger.info("broker topology declared: %s bound to %s (%s), dead letters to %s",
                    subscription.queue_name, products_exchange.name,
                    subscription.bus_binding.routing_key, subscription.dlq_name)
        return conn

    def create_task_handler(self, promise=promise):
        """Celery's handler, behind a check of the message's shape (workers/preflight.py), and
        with a last guard: whatever Celery raises on a message it had not acked, the message is
        parked with the error and the worker goes on consuming."""
        handle = super().create_task_handler(promise)

        def on_task_received(message):
            problem = task_message_problem(message)
            if problem:
                return self._park(message, f"invalid task message: {problem}")
            try:
                return handle(message)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the worker
                if message.acknowledged:
                    raise
                logger.exception("cannot turn message into a task; parking it")
                self._park(message, f"invalid task message: {type(exc).__name__}: {exc}")

        return on_task_received

    def _park(self, message, reason: str) -> None:
        try:
            parking.park_message(app=self.app, message=message, reason=reason)
        except confirming.PUBLISH_UNKNOWN as exc:
            # The broker is blocked (alarm) or away: the copy may or may not be in the DLQ.
            # Keep the original unacked and requeue it after a pause, off the consumer loop's
            # timer (the loop goes on: heartbeats, other messages).
            pause = confirming.publish_failed_pause((message.headers or {}).get(
                "x-delivery-count"))
            logger.warning("could not park message (%s: %s); requeueing it in %.0fs",
                           type(exc).__name__, exc, pause)
            self.timer.call_after(pause, self._requeue, (message,))
            return
        except Exception:  # noqa: BLE001 - fall back to the queue's own dead-lettering
            logger.exception("could not park message; rejecting it to the dead-letter exchange")
            message.reject_log_error(logger, self.connection_errors)
            return
        message.ack()

    def _requeue(self, message) -> None:
        if not message.acknowledged:
            message.reject_log_error(logger, self.connection_errors, requeue=True)

    def on_decode_error(self, message, exc):
        logging.getLogger("workers.consumer").error(
            "undecodable message (%s, %s): %s", message.content_type, message.content_encoding,
            exc)
        self._park(message, f"undecodable body ({message.content_type}): {exc}")

    def on_unknown_message(self, body, message):
        self._park(message, "not a Celery task message (no task header)")

    def on_unknown_task(self, body, message, exc):
        name = (message.headers or {}).get("task")
        self._park(message, f"unknown task {name!r}")

    def on_invalid_task(self, body, message, exc):
        self._park(message, f"invalid task message: {exc}")
