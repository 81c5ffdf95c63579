from django.core.management.base import BaseCommand

from admin_project.products.resync import products_republish, products_resync
from common.trace import trace_id_new, trace_id_set


class Command(BaseCommand):
    help = ("Republish the current state of all products (or the given ids), deletions "
            "included: straight to the broker with confirms (the given ids, and whatever the "
            "broker does not take, through the outbox), throttled and resumable.")

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, help="only these product ids")
        parser.add_argument("--rate", type=float, default=5000.0,
                            help="at most this many events per second (default 5000; 0 = no limit)")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--max-pending", type=int, default=20000,
                            help="pause while more events than this wait in the outbox")
        parser.add_argument("--restart", action="store_true",
                            help="start over instead of resuming an interrupted run")
        parser.add_argument("--through-outbox", action="store_true",
                            help="write every event into the outbox for the relay instead of "
                                 "publishing it (the broker need not be up; slower)")

    def handle(self, *args, ids, rate, batch_size, max_pending, restart, through_outbox,
               **options):
        trace_id = trace_id_new()  # every event of this run carries it
        trace_id_set(trace_id)
        if ids:
            n = products_republish(product_ids=ids)
        else:
            n = products_resync(batch_size=batch_size, rate=rate or None,
                                max_pending=max_pending, restart=restart,
                                through_outbox=through_outbox,
                                progress=lambda msg: self.stdout.write(msg))
        self.stdout.write(self.style.SUCCESS(f"resync queued {n} events (trace id {trace_id})"))
