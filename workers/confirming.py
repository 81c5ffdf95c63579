"""A publisher-confirmed producer for the worker's few publishes that must not be lost: retries
and parked messages. Only these wait for the broker's confirm; Celery's task events (one per
task state, for Flower) and remote-control replies do not, which keeps the consumer loop from
stalling on a round trip per event.

A fresh connection per use: these publishes are rare (errors only), and a connection kept idle
for hours could be dead without anyone noticing, turning a retry into a dead-lettered message."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def confirming_producer(app):
    with app.connection_for_write(transport_options={"confirm_publish": True}) as conn:
        conn.ensure_connection(max_retries=2)
        yield conn.Producer(channel=conn.default_channel)
