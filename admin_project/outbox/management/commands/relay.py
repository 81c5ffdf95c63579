import signal
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from admin_project.outbox.loop import Relay
from common.metrics import exporter_start


class Command(BaseCommand):
    help = "Publish pending outbox events to RabbitMQ (runs until SIGTERM/SIGINT)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true",
                            help="publish what is pending now, then exit (non-zero on failure)")
        parser.add_argument("--sweep-seconds", type=float, default=None,
                            help="how often to look for pending rows without a notification")
        parser.add_argument("--check", action="store_true",
                            help="healthcheck: exit 0 if a running relay's loop went round "
                                 "within --max-age seconds (its heartbeat file), else 1")
        parser.add_argument("--max-age", type=float, default=60.0,
                            help="with --check: the oldest acceptable heartbeat (default 60)")

    def handle(self, *args, once=False, sweep_seconds=None, check=False, max_age=60.0,
               **options):
        if check:
            return self._check(max_age)
        relay = Relay(sweep_seconds=sweep_seconds)
        if once:
            started = time.perf_counter()
            n = relay.run_once()
            elapsed = time.perf_counter() - started
            self.stdout.write(f"published {n} events in {elapsed:.3f}s")
            return
        exporter_start(settings.RELAY_METRICS_BIND)
        signal.signal(signal.SIGTERM, relay.stop)
        signal.signal(signal.SIGINT, relay.stop)
        checks = self._antientropy_start()
        try:
            relay.run_forever()
        finally:
            checks.set()

    def _antientropy_start(self) -> threading.Event:
        """The periodic anti-entropy check, in a thread of this process (one check at a time
        across relays: an advisory lock). Its metrics exist also when it is off
        (``antientropy_enabled 0``), so an alert sees that."""
        from admin_project.products.antientropy import antientropy_forever, antientropy_metrics

        stop = threading.Event()
        every = settings.RECONCILE_EVERY_SECONDS
        antientropy_metrics(every=every)
        if every > 0:
            threading.Thread(target=antientropy_forever, name="antientropy", daemon=True,
                             kwargs={"stop": stop, "every": every,
                                     "catalog_url": settings.CATALOG_URL}).start()
        return stop

    def _check(self, max_age: float) -> None:
        path = Path(settings.RELAY_HEARTBEAT_FILE)
        try:
            age = time.time() - float(path.read_text().strip())
        except (OSError, ValueError) as exc:
            self.stderr.write(f"relay unhealthy: no heartbeat in {path} ({exc})")
            sys.exit(1)
        if age > max_age:
            self.stderr.write(f"relay unhealthy: last heartbeat {age:.0f}s ago (> {max_age:g}s)")
            sys.exit(1)
        self.stdout.write(f"relay ok: heartbeat {age:.1f}s ago")
