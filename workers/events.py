"""Task events for Flower, published with less work per publish.

A worker sends a "task-received" and a "task-succeeded" event per message (workers/handling.py);
Celery buffers them and publishes each batch as one ``task.multi`` message through a kombu
``Producer``, whose generic path (serializer registry, JSON through kombu's encoder with its
type hooks, an exchange declare check per publish) cost ~7% of a worker's CPU in the drain
benchmark. This dispatcher publishes the same message (same exchange, routing key, body,
content type, headers and delivery mode: Flower reads it as before) with msgspec's encoder and
the channel's own ``basic_publish``, the exchange checked once per channel. Anything msgspec
cannot encode, or a publish with a retry policy, takes Celery's own path.

Used by every subscriber's app: ``Celery(..., events="workers.events:Events")``."""

from __future__ import annotations

import threading

import msgspec
from celery.app.events import Events as CeleryEvents
from celery.events.dispatcher import EventDispatcher as CeleryEventDispatcher
from kombu.utils import json as kombu_json

_encode = msgspec.json.Encoder().encode


class EventDispatcher(CeleryEventDispatcher):
    """Also: never publishes from another thread than the worker's consumer loop. With the
    thread pool a task's "succeeded" event is sent from its thread; Celery flushes the buffer
    right there once it holds ``buffer_limit`` events, and py-amqp's publish reads the socket
    (``drain_events``, for a broker's "connection blocked"), racing the loop for its frames: a
    worker hung with two messages unapplied (the bench's smoke run). A flush asked for from
    another thread is handed to the loop instead (``on_send_buffered``, as every other send)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loop_thread = threading.get_ident()

    def flush(self, errors=True, groups=True):
        if threading.get_ident() != self._loop_thread and self.on_send_buffered:
            self.on_send_buffered()  # the loop flushes (kombu's hub.call_soon)
            return
        super().flush(errors=errors, groups=groups)

    def extend_buffer(self, other):
        """After a reconnect, the new dispatcher publishes what the old one still held: Celery
        carries over the events that failed to publish, this also the task events buffered for
        the next flush (workers/consumer.py)."""
        super().extend_buffer(other)
        for group, events in other._group_buffer.items():
            self._group_buffer[group].extend(events)

    def _publish(self, event, producer, routing_key, retry=False, retry_policy=None, **kwargs):
        if producer is None:
            return None
        if retry or self.serializer != "json":
            return super()._publish(event, producer, routing_key, retry=retry,
                                    retry_policy=retry_policy, **kwargs)
        try:
            channel = producer.channel
            if getattr(channel, "_events_exchange_checked", None) != self.exchange.name:
                producer.maybe_declare(self.exchange)  # passive (workers/subscriber.py)
                channel._events_exchange_checked = self.exchange.name
            try:
                body = _encode(event)
            except (TypeError, msgspec.EncodeError):
                body = kombu_json.dumps(event).encode()
            message = channel.prepare_message(body, None, "application/json", "utf-8",
                                              self.headers, {"delivery_mode": self.delivery_mode})
            return channel.basic_publish(message, exchange=self.exchange.name,
                                         routing_key=routing_key)
        except Exception:
            if not self.buffer_while_offline:
                raise
            self._outbound_buffer.append((event, routing_key))
            return None


class Events(CeleryEvents):
    dispatcher_cls = "workers.events:EventDispatcher"
