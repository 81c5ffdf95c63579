"""The relay process (``manage.py relay``): publish what is pending, then sleep until a commit
wakes it (LISTEN/NOTIFY) or the sweep interval passes; back off with jitter while the broker or
the database fails; beat a heartbeat; purge rows sent long ago. One cycle is ``publish``'s."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connections
from prometheus_client import Counter, Gauge

from admin_project.celery_app import app as celery_app

from .listen import OutboxListener
from .publish import Publisher, outbox_publish_cycle
from .record import outbox_purge_sent

logger = logging.getLogger("admin_project.relay")

PUBLISH_FAILURES = Counter("relay_publish_failures",
                           "Failed claim/publish cycles (events stayed pending, retried).")
HEARTBEAT = Gauge("relay_heartbeat_timestamp_seconds", "When the relay loop last went round.")


class Relay:
    def __init__(self, *, app=celery_app, sweep_seconds: float | None = None,
                 max_backoff: float | None = None) -> None:
        self.app = app
        self.publisher = Publisher(app)
        self.sweep_seconds = sweep_seconds or settings.RELAY_SWEEP_SECONDS
        self.max_backoff = max_backoff or settings.RELAY_MAX_BACKOFF_SECONDS
        self.stop_event = threading.Event()
        self.ready = threading.Event()  # set once listening and the first drain is done
        self._wake_r, self._wake_w = os.pipe()  # stop() wakes a waiting loop at once
        os.set_blocking(self._wake_w, False)
        self.published = 0  # events, for the log lines (the counters are Prometheus')
        self._backoff = 0.0
        self._last_purge = 0.0
        self._last_report = time.monotonic()
        self._reported_events = 0
        self.linger = settings.RELAY_LINGER_SECONDS
        self.linger_max = settings.RELAY_LINGER_MAX_SECONDS
        self.heartbeat_file = settings.RELAY_HEARTBEAT_FILE
        self._last_beat = 0.0
        self._running = threading.Event()   # run_forever is in its loop
        self._finished = threading.Event()  # ... and has left it

    def stop(self, *_args) -> None:
        """Ask the loop to finish (safe to call from a signal handler or another thread). If it
        has not finished ``ADMIN_RELAY_STOP_GRACE_SECONDS`` later (blocked in a database or
        broker call that has not timed out yet), the process exits with status 1: a stop is
        always prompt. Claimed rows are safe either way: a claim is the relay's open
        transaction, and the server rolls it back when the connection goes (or after
        idle_in_transaction_session_timeout, if the path to it is black-holed)."""
        first = not self.stop_event.is_set()
        self.stop_event.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        grace = settings.RELAY_STOP_GRACE_SECONDS
        if first and grace > 0 and self._running.is_set():
            watchdog = threading.Timer(grace, self._stop_overdue, args=(grace,))
            watchdog.daemon = True
            watchdog.start()

    def _stop_overdue(self, grace: float) -> None:
        if self._finished.is_set():
            return
        logger.error("relay did not stop within %gs of being asked (blocked in a database or "
                     "broker call); exiting now, its claimed events stay pending", grace)
        logging.shutdown()
        os._exit(1)

    def run_once(self) -> int:
        """Publish everything pending now. Raises on the first failure."""
        total = 0
        while not self.stop_event.is_set():
            cycle = outbox_publish_cycle(publisher=self.publisher)
            total += cycle.published
            self.published += cycle.published
            if not cycle.more:  # drained (a commit since then has sent a NOTIFY: we wake again)
                break
        return total

    def run_forever(self) -> None:
        self._running.set()
        try:
            self._run_forever()
        finally:
            self._finished.set()

    def _run_forever(self) -> None:
        listener = OutboxListener()
        # LISTEN before the first drain: a change committed in between still wakes us.
        listener.wait(0, wake_fd=self._wake_r)
        try:
            self.publisher.producer()  # connect now, not on the first event
        except Exception as exc:  # noqa: BLE001 - the loop below retries with backoff
            logger.warning("broker not reachable yet (%s); events will wait in the outbox", exc)
            self.publisher.reset()
        logger.info("relay started (sweep every %.1fs, up to %d events per message)",
                    self.sweep_seconds, settings.RELAY_MAX_EVENTS_PER_MESSAGE)
        last_busy = 0.0
        last_batch = 0
        try:
            while not self.stop_event.is_set():
                self._beat()
                try:
                    n = self.run_once()
                    last_batch = n
                    if n:
                        last_busy = time.monotonic()
                        self._report()
                    if self._backoff:
                        logger.info("broker reachable again; relay resumed")
                    self._backoff = 0.0
                    self.ready.set()
                    self._maybe_purge()
                except Exception as exc:  # noqa: BLE001
                    self._on_failure(exc)
                    continue
                notified = listener.wait(self.sweep_seconds, wake_fd=self._wake_r)
                if notified and time.monotonic() - last_busy < 0.05 and self.linger:
                    # Busy: let more commits land so they share one claim and one message. The
                    # wait grows with the last batch (more load, bigger batches, less CPU per
                    # event) and is capped, so a quiet system stays at ~2 ms.
                    self.stop_event.wait(min(self.linger_max, self.linger * max(1, last_batch)))
        finally:
            listener.close()
            self.publisher.close()
            connections.close_all()
            logger.info("relay stopped (%d events published)", self.published)

    def _beat(self) -> None:
        """Liveness: the loop went round (``manage.py relay --check`` reads the file)."""
        now = time.time()
        if now - self._last_beat < 1.0:
            return
        self._last_beat = now
        HEARTBEAT.set(now)
        if self.heartbeat_file:
            try:
                with open(self.heartbeat_file, "w") as f:
                    f.write(f"{now:.3f}\n")
            except OSError as exc:
                logger.warning("cannot write heartbeat file %s: %s", self.heartbeat_file, exc)

    def _report(self) -> None:
        """One INFO line per 10 s of activity (a line per publish costs real CPU under load)."""
        now = time.monotonic()
        if now - self._last_report >= 10:
            n = self.published - self._reported_events
            logger.info("published %d events in %.0fs (total %d)", n,
                        now - self._last_report, self.published)
            self._last_report, self._reported_events = now, self.published
        logger.debug("published (total %d)", self.published)

    def _on_failure(self, exc: BaseException) -> None:
        PUBLISH_FAILURES.inc()
        self.publisher.reset()
        self._backoff = min(self.max_backoff, max(0.5, self._backoff * 2))
        delay = self._backoff * random.uniform(0.5, 1.0)
        logger.warning("publish failed (%s: %s); events stay pending, retrying in %.1fs",
                       type(exc).__name__, exc, delay)
        for conn in connections.all():
            conn.close_if_unusable_or_obsolete()
        # the heartbeat goes on while backing off: the loop is alive, only waiting
        until = time.monotonic() + delay
        while not self.stop_event.is_set():
            left = until - time.monotonic()
            if left <= 0:
                break
            self._beat()
            self.stop_event.wait(min(left, 1.0))

    def _maybe_purge(self) -> None:
        if time.monotonic() - self._last_purge < 60:
            return
        self._last_purge = time.monotonic()
        n = outbox_purge_sent(older_than=timedelta(hours=settings.OUTBOX_RETENTION_HOURS))
        if n:
            logger.info("purged %d sent outbox rows older than %sh", n,
                        settings.OUTBOX_RETENTION_HOURS)
