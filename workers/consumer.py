"""The Celery Consumer of every subscriber's worker (the catalog's, the audit log's).

* On every (re)connect, before any step starts consuming, it declares the subscriber's broker
  topology (``app.subscriber``, see ``workers/topology.py``). Doing it here rather than in a
  bootstep matters: bootstep order is not deterministic, and when Celery's own queue
  declaration meets a 406 it reconnects forever. A mismatch stops the worker with a message
  saying what differs and how to fix it.
* Messages Celery cannot even turn into a task are parked in the dead-letter queue with a reason,
  instead of being acked away (undecodable body: Celery's default) or rejected without one
  (unknown task, refused content type, malformed message)."""

from __future__ import annotations

import logging

from celery.utils.log import get_logger
from celery.worker.consumer import Consumer

from workers import parking, topology

logger = get_logger("workers.consumer")


class SubscriberConsumer(Consumer):
    def connect(self):
        conn = super().connect()
        subscriber = self.app.subscriber
        channel = conn.channel()
        try:
            subscriber.declare(channel)
        except topology.TopologyMismatch as exc:
            logger.critical("%s", exc.code)
            conn.release()
            raise
        finally:
            try:
                channel.close()
            except Exception:  # noqa: BLE001 - a 406 already closed it
                pass
        logger.info("broker topology declared: %s bound to %s (%s), dead letters to %s",
                    subscriber.queue_name, topology.products_exchange.name,
                    subscriber.bus_binding.routing_key, subscriber.dlq_name)
        return conn

    def _park(self, message, reason: str) -> None:
        try:
            parking.park_message(app=self.app, message=message, reason=reason)
        except Exception:  # noqa: BLE001 - fall back to the queue's own dead-lettering
            logger.exception("could not park message; rejecting it to the dead-letter exchange")
            message.reject_log_error(logger, self.connection_errors)
            return
        message.ack()

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
