import signal

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
            n = relay.run_once()
            self.stdout.write(f"published {n} events")
            return
        signal.signal(signal.SIGTERM, relay.stop)
        signal.signal(signal.SIGINT, relay.stop)
        relay.run_forever()
