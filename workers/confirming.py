"""A publisher-confirmed producer for the worker's few publishes that must not be lost: retries
and parked messages. Only these wait for the broker's confirm; Celery's task events (one per
task state, for Flower) and remote-control replies do not, which keeps the consumer loop from
stalling on a round trip per event.

One connection per process, made on first use and dropped on any error (so a broken one is never
reused); a process forked from one that had it makes its own."""

from __future__ import annotations

import contextlib
import os

_conn = None
_pid = None


@contextlib.contextmanager
def confirming_producer(app):
    global _conn, _pid
    if _conn is None or _pid != os.getpid():
        _conn = app.connection_for_write(transport_options={"confirm_publish": True})
        _pid = os.getpid()
    try:
        _conn.ensure_connection(max_retries=2)
        yield _conn.Producer(channel=_conn.default_channel)
    except BaseException:
        conn, _conn = _conn, None
        with contextlib.suppress(Exception):
            conn.release()
        raise
