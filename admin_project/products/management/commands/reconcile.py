from django.core.management.base import BaseCommand

from admin_project.products.management.commands.antientropy import (
    add_check_arguments,
    exit_code,
    run_check,
)
from admin_project.products.resync import Drift, drift_report
from common.trace import trace_id_new, trace_id_set


class Command(BaseCommand):
    help = ("Compare admin and catalog (ids, versions, deletions and content, by range digests) "
            "and print the drift. Exit 0: no drift (changes in flight are not drift); 1: drift; "
            "2: the catalog could not be read (one line on stderr); 3: no verdict (another "
            "check held the lock for --wait seconds, or --max-seconds ran out first); 4: the "
            "admin database could not be read. --repair "
            "republishes what drifted through the outbox.")

    def add_arguments(self, parser):
        add_check_arguments(parser)
        parser.add_argument("--repair", action="store_true",
                            help="republish missing, stale, not-deleted and content-drifted "
                                 "products")

    def handle(self, *args, catalog_url, repair, grace, max_seconds, wait, **options):
        trace_id = trace_id_new()
        trace_id_set(trace_id)
        check = run_check(self, "reconcile", catalog_url=catalog_url, repair=repair, grace=grace,
                          max_seconds=max_seconds, wait=wait)
        drift = Drift(missing=check.missing, behind=check.behind, ahead=check.ahead,
                      not_deleted=check.not_deleted, unknown=check.unknown,
                      content=check.content, checked=check.compared)
        self.stdout.write(drift_report(drift))
        if check.in_flight:
            shown = ", ".join(map(str, check.in_flight[:20]))
            self.stdout.write(f"  {'in flight':<12} {len(check.in_flight):>7}  (pending in the "
                              f"outbox or sent in the last {grace:g}s: not drift, not "
                              f"repaired): {shown}{' ...' if len(check.in_flight) > 20 else ''}")
        if not check.complete:
            self.stdout.write(f"incomplete: stopped at id {check.stopped_at} after "
                              f"{check.seconds:.0f}s (--max-seconds)")
        if repair and (check.repaired or check.deferred):
            self.stdout.write(f"repair: queued {check.repaired} events (trace id {trace_id})"
                              + (f", {check.deferred} left (ADMIN_ANTIENTROPY_MAX_REPAIRS / "
                                 "MAX_PENDING): run it again" if check.deferred else "")
                              + "; run reconcile again to confirm")
        code = exit_code(check)
        if code:
            raise SystemExit(code)
        self.stdout.write(self.style.SUCCESS("no drift"))
