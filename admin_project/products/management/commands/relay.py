import signal
import time

from django.core.management.base import BaseCommand

from admin_project.products.relay import Relay


class Command(BaseCommand):
    help = "Publish pending outbox events to RabbitMQ (runs until SIGTERM/SIGINT)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true",
                            help="publish what is pending now, then exit (non-zero on failure)")
        parser.add_argument("--sweep-seconds", type=float, default=None,
                            help="how often to look for pending rows without a notification")

    def handle(self, *args, once=False, sweep_seconds=None, **options):
        relay = Relay(sweep_seconds=sweep_seconds)
        if once:
            started = time.perf_counter()
            n = relay.run_once()
            elapsed = time.perf_counter() - started
            self.stdout.write(f"published {n} events in {elapsed:.3f}s")
            return
        signal.signal(signal.SIGTERM, relay.stop)
        signal.signal(signal.SIGINT, relay.stop)
        relay.run_forever()
