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

import contextlib
import logging
import os
import select
import socket
import threading
import time

import psycopg2
from django.db.backends.postgresql import base
from psycopg2 import extensions

logger = logging.getLogger("common.postgresql")

# The deadline of one wait, in seconds; the process's DATABASES set it (the largest configured).
_answer_timeout: float | None = None
# A thread's overall deadline (time.monotonic()) for every wait, while one is set
# (``waits_bounded``): a web request's database waits, a lost COMMIT's resolution.
_bound = threading.local()


@contextlib.contextmanager
def waits_bounded(seconds: float | None):
    """Every wait for the server in this thread (connect, query, fetch, commit) ends within
    ``seconds`` from now, all of them together (nested: the earlier deadline wins); None or
    0: no overall deadline added. Only with the wait callback installed (an answer timeout)."""
    before = getattr(_bound, "until", None)
    if seconds:
        until = time.monotonic() + seconds
        _bound.until = until if before is None else min(before, until)
    try:
        yield
    finally:
        _bound.until = before


def wait_with_deadline(conn) -> None:
    """psycopg2 wait callback: poll until the operation is done, at most ``_answer_timeout``."""
    timeout = _answer_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    until, what = getattr(_bound, "until", None), "DB_ANSWER_TIMEOUT_SECONDS"
    if until is not None and (deadline is None or until < deadline):
        deadline, what = until, "the caller's overall deadline"
        timeout = max(0.0, until - time.monotonic())
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
            _give_up(conn, timeout, what)
        ready = select.select(readers, writers, [], remaining)
        if not any(ready):
            _give_up(conn, timeout, what)


def _give_up(conn, timeout: float, what: str) -> None:
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
        f"({what}): connection abandoned")


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

    # A COMMIT cut off by a lost connection has an unknown outcome: the server may have
    # written it. With ``resolve_lost_commits`` on (common.errors.DatabaseUnavailableMiddleware
    # turns it on for every web request), ``_commit`` first asks for the transaction's id (one
    # more round trip: ``txid_current_if_assigned()``, NULL when it wrote nothing), and when
    # the COMMIT is lost it opens a new connection and asks the server what became of that
    # transaction (``txid_status``): committed -> the commit returns as if nothing had happened
    # (on the new connection); aborted -> the error is raised marked ``commit_outcome =
    # "aborted"`` (nothing was written: the caller may run the transaction again); still
    # unknown (the server cannot be reached, or the transaction is still in progress after
    # ``LOST_COMMIT_WAIT`` seconds, every wait included) -> raised unmarked, and the wrapper is
    # left closed (Django does not reconnect on the way out: the 503 comes at once).
    resolve_lost_commits = False
    LOST_COMMIT_WAIT = 5.0

    def _commit(self):
        if not self.resolve_lost_commits or self.connection is None:
            return super()._commit()
        try:
            with self.wrap_database_errors, self.connection.cursor() as cursor:
                cursor.execute("SELECT txid_current_if_assigned()")
                xid = cursor.fetchone()[0]
        except Exception as exc:
            if connection_lost(exc):  # the COMMIT was never sent: the transaction is gone
                exc.commit_outcome = "aborted"
            raise
        try:
            return super()._commit()
        except Exception as exc:
            if not connection_lost(exc):
                raise  # an answer from the server: it did not commit (as always)
            outcome = "aborted" if xid is None else self._lost_commit_outcome(xid)
            logger.warning("a COMMIT lost its connection (%s); transaction %s: %s",
                           str(exc).strip()[:200], xid, outcome or "outcome unknown")
            if outcome == "committed":
                return None
            if outcome == "aborted":
                exc.commit_outcome = "aborted"
            raise

    def _lost_commit_outcome(self, xid: int) -> str | None:
        """"committed" or "aborted" as the server tells it on a new connection (which becomes
        this wrapper's, with the transaction's on_commit hooks kept), or None if it cannot
        tell within ``LOST_COMMIT_WAIT`` seconds."""
        hooks = self.run_on_commit
        with contextlib.suppress(Exception):
            self.connection.close()
        status = connected = None
        with waits_bounded(self.LOST_COMMIT_WAIT):
            until = _bound.until
            while True:
                try:
                    if not connected:
                        self.connect()  # a new connection, in autocommit (Django's own setup)
                        connected = True
                    with self.connection.cursor() as cursor:
                        cursor.execute("SELECT txid_status(%s)", [xid])
                        status = cursor.fetchone()[0]
                except Exception:  # noqa: BLE001 - the server is not reachable (yet)
                    connected = status = None
                if status in ("committed", "aborted") or time.monotonic() >= until:
                    break
                time.sleep(0.1)  # "in progress": the cut-off backend has not finished yet
        if status in ("committed", "aborted"):
            self.run_on_commit = hooks  # (connect() empties them; a rollback drops them)
            return status
        with contextlib.suppress(Exception):
            self.connection.close()
        self.closed_in_transaction = True  # Django drops it on the way out, without waiting
        return None


def connection_lost(exception) -> bool:
    """Whether a database error says the connection is gone (SQLSTATE class 08, 57P01-03, or
    libpq's own error without a code), as opposed to an answer from the server."""
    from django.db import InterfaceError, OperationalError

    if isinstance(exception, InterfaceError | psycopg2.InterfaceError):
        return True
    if not isinstance(exception, OperationalError | psycopg2.OperationalError):
        return False
    cause = exception if isinstance(exception, psycopg2.Error) else exception.__cause__
    code = getattr(cause, "pgcode", None)
    return code is None or code.startswith(LOST_SQLSTATES)


# SQLSTATE classes and codes of a connection that is gone or cannot be had (08: connection
# exception; 57P01-03: terminated by an administrator, a crash, cannot connect now); errors
# without a code come from libpq itself (server closed the connection, could not connect)
LOST_SQLSTATES = ("08", "57P01", "57P02", "57P03")
