from django.core.management.base import BaseCommand

from admin_project.products.restore import products_restore_fence
from admin_project.settings.base import env
from common.trace import trace_id_new, trace_id_set


class Command(BaseCommand):
    help = ("After restoring the admin database from a backup, before the admin serves writes: "
            "raise every product the catalog holds at a newer version above it, delete the ones "
            "the backup does not know, and move the id sequence past every id the catalog has "
            "(docs/operations.md, Backups).")

    def add_arguments(self, parser):
        parser.add_argument("--catalog-url",
                            default=env("CATALOG_URL", default="http://127.0.0.1:8001"),
                            help="the catalog web app (default $CATALOG_URL or :8001)")
        parser.add_argument("--dry-run", action="store_true",
                            help="say what it would change, change nothing")

    def handle(self, *args, catalog_url, dry_run, **options):
        trace_id = trace_id_new()  # every event of this run carries it
        trace_id_set(trace_id)
        report = products_restore_fence(catalog_url=catalog_url, dry_run=dry_run)
        verb = "would" if dry_run else "did"
        for name, ids in (("raise above the catalog's version", report.raised),
                          ("record as deleted", report.deleted)):
            if ids:
                shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
                self.stdout.write(f"  {verb} {name}: {len(ids)} ({shown})")
        self.stdout.write(self.style.SUCCESS(
            f"restore fence: catalog holds {report.catalog_ids} product ids; "
            f"{report.changes} events {'to queue' if dry_run else 'queued'} "
            f"(trace id {trace_id}); next product id {report.next_id}"))
