"""``ENGINE = "common.postgresql"``: django.db.backends.postgresql plus a deadline on every wait
for the server (connect, query, fetch, commit).

libpq's own bounds (connect_timeout, TCP keepalives, tcp_user_timeout) and the server's
(statement_timeout, idle_in_transaction_session_timeout) come in through OPTIONS
(common/settings.py ``databases``). None of them catches a path that accepts the connection and
then forwards nothing (a black-holed network, a stuck proxy or failover): the kernel keeps the
socket alive and the server never sees the query. So psycopg2 runs in its "green" mode with a
wait callback (``psycopg2.extensions.set_wait_callback``) that waits with ``select`` for at most
``ANSWER_TIMEOUT`` seconds (``<PREFIX>_DB_ANSWER_TIMEOUT_SECONDS``) per operation, then shuts
the connection's socket down and raises ``OperationalError``: the caller's usual database-error
path (the relay backs off, the worker retries the message) takes over, and Django replaces the
connection. It is abandoned, not cancelled: a cancel request opens a second connection over the
same dead path."""

from __future__ import annotations

import os
import select
import socket
import time

import psycopg2
from django.db.backends.postgresql import base
from psycopg2 import extensions

# The deadline of one wait, in seconds; the process's DATABASES set it (the largest configured).
_answer_timeout: float | None = None


def wait_with_deadline(conn) -> None:
    """psycopg2 wait callback: poll until the operation is done, at most ``_answer_timeout``."""
    timeout = _answer_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        if state == extensions.POLL_READ:
            readers, writers = [conn.fileno()], []
        elif state == extensions.POLL_WRITE:
            readers, writers = [], [conn.fileno()]
        else:  # pragma: no cover - psycopg2 never returns anything else
            raise psycopg2.OperationalError(f"bad poll state {state!r}")
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            _give_up(conn, timeout)
        ready = select.select(readers, writers, [], remaining)
        if not any(ready):
            _give_up(conn, timeout)


def _give_up(conn, timeout: float) -> None:
    # Shut the socket down before anything closes the connection: psycopg2's close() of a
    # connection with a query in flight waits for the server, which is the very thing that is
    # not answering. After the shutdown every read and write fails at once.
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
    except (OSError, psycopg2.Error):
        pass
    raise psycopg2.OperationalError(
        f"no answer from the database server within {timeout:g}s "
        "(DB_ANSWER_TIMEOUT_SECONDS): connection abandoned")


def answer_timeout_set(seconds: float | None) -> None:
    """Install the wait callback (once per process) with this deadline; None or 0: no deadline,
    psycopg2's blocking mode."""
    global _answer_timeout
    if not seconds:
        return
    _answer_timeout = max(seconds, _answer_timeout or 0)
    if extensions.get_wait_callback() is not wait_with_deadline:
        extensions.set_wait_callback(wait_with_deadline)


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        answer_timeout_set(self.settings_dict.get("ANSWER_TIMEOUT"))
        return super().get_new_connection(conn_params)
