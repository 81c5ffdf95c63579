from django.conf import settings
from django.core.management.base import BaseCommand

from admin_project.products.antientropy import (
    CatalogUnavailable,
    antientropy_repair,
    products_antientropy_check,
)
from admin_project.products.resync import Drift, drift_report
from common.trace import trace_id_new, trace_id_set

NO_DRIFT, DRIFT, ERROR = 0, 1, 2


class Command(BaseCommand):
    help = ("Compare admin and catalog (ids, versions, deletions and content, by range digests) "
            "and print the drift. Exit 0: no drift; 1: drift; 2: the catalog could not be read "
            "(one line on stderr). --repair republishes what drifted through the outbox.")

    def add_arguments(self, parser):
        parser.add_argument("--catalog-url", default=settings.CATALOG_URL,
                            help="the catalog web app (default $CATALOG_URL or :8001)")
        parser.add_argument("--repair", action="store_true",
                            help="republish missing, stale, not-deleted and content-drifted "
                                 "products")

    def handle(self, *args, catalog_url, repair, **options):
        try:
            check = products_antientropy_check(catalog_url=catalog_url, repair=False)
        except CatalogUnavailable as exc:
            self.stderr.write(f"reconcile: catalog unreadable: {exc}")
            raise SystemExit(ERROR) from None
        drift = Drift(missing=check.missing, behind=check.behind, ahead=check.ahead,
                      not_deleted=check.not_deleted, unknown=check.unknown,
                      content=check.content, checked=check.compared)
        self.stdout.write(drift_report(drift))
        if drift.total and repair:
            trace_id = trace_id_new()
            trace_id_set(trace_id)
            n = antientropy_repair(check)
            self.stdout.write(f"repair: queued {n} events (trace id {trace_id}); "
                              "run reconcile again to confirm")
        if drift.total:
            raise SystemExit(DRIFT)
        self.stdout.write(self.style.SUCCESS("no drift"))
