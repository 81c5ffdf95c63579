from django.core.management.base import BaseCommand

from admin_project.products.resync import drift_report, products_reconcile, products_republish
from admin_project.settings.base import env
from common.trace import trace_id_new, trace_id_set


class Command(BaseCommand):
    help = ("Compare admin and catalog (ids, versions, deletions) through the catalog API; print "
            "the drift and exit 1 when there is any. --repair republishes the drifted products.")

    def add_arguments(self, parser):
        parser.add_argument("--catalog-url",
                            default=env("CATALOG_URL", default="http://127.0.0.1:8001"),
                            help="the catalog web app (default $CATALOG_URL or :8001)")
        parser.add_argument("--repair", action="store_true",
                            help="republish missing, stale and not-deleted products")

    def handle(self, *args, catalog_url, repair, **options):
        drift = products_reconcile(catalog_url=catalog_url)
        self.stdout.write(drift_report(drift))
        if drift.total and repair:
            trace_id = trace_id_new()
            trace_id_set(trace_id)
            n = products_republish(product_ids=drift.repairable_ids())
            self.stdout.write(f"repair: queued {n} events (trace id {trace_id}); "
                              "run reconcile again to confirm")
        if drift.total:
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS("no drift"))
