"""The LISTEN connection that wakes the relay when a change commits (record.py's NOTIFY)."""

from __future__ import annotations

import logging
import select
import time

from django.db import connections

from .record import CHANNEL

logger = logging.getLogger("admin_project.relay")


class OutboxListener:
    """A dedicated connection LISTENing for the NOTIFY sent by each committed change."""

    def __init__(self) -> None:
        self._wrapper = None

    def _connect(self):
        self.close()
        self._wrapper = connections.create_connection("default")
        self._wrapper.ensure_connection()
        raw = self._wrapper.connection
        raw.autocommit = True
        with raw.cursor() as cur:
            cur.execute(f"LISTEN {CHANNEL}")
        return raw

    def wait(self, timeout: float, wake_fd: int | None = None) -> bool:
        """Block until a change committed, ``wake_fd`` is readable, or ``timeout`` passed.
        True if notified."""
        try:
            raw = self._wrapper.connection if self._wrapper else self._connect()
            if raw.notifies:
                raw.notifies.clear()
                return True
            fds = [raw] if wake_fd is None else [raw, wake_fd]
            ready, _, _ = select.select(fds, [], [], timeout)
            if raw in ready:
                raw.poll()
                notified = bool(raw.notifies)
                raw.notifies.clear()
                return notified
            return False
        except Exception:  # noqa: BLE001 - database gone: sleep, reconnect next time
            logger.warning("outbox listener lost its database connection; reconnecting")
            self.close()
            time.sleep(min(timeout, 1.0))
            return False

    def close(self) -> None:
        if self._wrapper is not None:
            try:
                self._wrapper.close()
            except Exception:  # noqa: BLE001
                pass
            self._wrapper = None
