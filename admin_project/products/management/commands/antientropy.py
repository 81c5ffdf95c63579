from django.conf import settings
from django.core.management.base import BaseCommand

from admin_project.products.antientropy import CatalogUnavailable, products_antientropy_check
from common.trace import trace_id_new, trace_id_set


class Command(BaseCommand):
    help = ("One anti-entropy check now (the relay runs one every ADMIN_RECONCILE_EVERY_SECONDS): "
            "compare the catalog by range digests, repair drift through the outbox. Exit 0: no "
            "drift; 1: drift found (repaired unless --no-repair); 2: the catalog is unreadable.")

    def add_arguments(self, parser):
        parser.add_argument("--catalog-url", default=settings.CATALOG_URL,
                            help="the catalog web app (default $CATALOG_URL)")
        parser.add_argument("--no-repair", action="store_true", help="report only")

    def handle(self, *args, catalog_url, no_repair, **options):
        trace_id = trace_id_new()
        trace_id_set(trace_id)
        try:
            check = products_antientropy_check(catalog_url=catalog_url, repair=not no_repair)
        except CatalogUnavailable as exc:
            self.stderr.write(f"antientropy: catalog unreadable: {exc}")
            raise SystemExit(2) from None
        self.stdout.write(check.summary() + (f" (trace id {trace_id})" if check.repaired else ""))
        for kind in check.KINDS:
            ids = getattr(check, kind)
            if ids:
                more = " ..." if len(ids) > 20 else ""
                self.stdout.write(f"  {kind:<12} {len(ids):>7}: "
                                  f"{', '.join(map(str, ids[:20]))}{more}")
        if check.drifted:
            raise SystemExit(1)
