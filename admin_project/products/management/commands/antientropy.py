from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, InterfaceError

from admin_project.products.antientropy import CatalogUnavailable, antientropy_check_locked
from common.trace import trace_id_new, trace_id_set

# exit codes (docs/operations.md, "Anti-entropy"); reconcile uses the same
NO_DRIFT, DRIFT, UNREADABLE, NO_VERDICT, ADMIN_UNREADABLE = 0, 1, 2, 3, 4


def add_check_arguments(parser) -> None:
    """The options `antientropy` and `reconcile` share."""
    parser.add_argument("--catalog-url", default=settings.CATALOG_URL,
                        help="the catalog web app (default $CATALOG_URL)")
    parser.add_argument("--grace", type=float, default=settings.ANTIENTROPY_GRACE_SECONDS,
                        help="a change sent less than this many seconds ago is in flight, not "
                             "drift (default $ADMIN_ANTIENTROPY_GRACE_SECONDS); 0 when you know "
                             "sent events were lost")
    parser.add_argument("--max-seconds", type=float,
                        default=settings.ANTIENTROPY_MAX_SECONDS,
                        help="stop comparing after this long (default "
                             "$ADMIN_ANTIENTROPY_MAX_SECONDS); what was found is reported")
    parser.add_argument("--wait", type=float, default=60.0,
                        help="wait this long for another check (the relay's) to finish "
                             "(default 60); exit 3 if it does not")


def run_check(command, name: str, *, catalog_url: str, repair: bool, grace: float,
              max_seconds: float, wait: float):
    """One check under the relays' lock; exits 2 (catalog unreadable), 3 (no verdict: the
    lock) or 4 (the admin database unreadable) with one line on stderr."""
    try:
        check = antientropy_check_locked(catalog_url=catalog_url, repair=repair, grace=grace,
                                         max_seconds=max_seconds, wait=wait)
    except (DatabaseError, InterfaceError) as exc:  # this side's own database
        code = getattr(exc, "pgcode", None) or getattr(exc.__cause__, "pgcode", None)
        what = ("refuses writes (read-only: the repairs could not be queued; without --repair "
                "the check only reads)" if code == "25006" else "unreadable")
        command.stderr.write(f"{name}: admin database {what}: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:300]}")
        raise SystemExit(ADMIN_UNREADABLE) from None
    except CatalogUnavailable as exc:
        done = exc.check
        more = (f" ({done.repaired} repairs queued before)" if done and done.repaired else "")
        command.stderr.write(f"{name}: catalog unreadable: {exc}{more}")
        raise SystemExit(UNREADABLE) from None
    if check is None:
        command.stderr.write(f"{name}: another anti-entropy check (a relay's, or a command's) "
                             f"held the lock for {wait:g}s: no verdict, try again later")
        raise SystemExit(NO_VERDICT)
    return check


def exit_code(check) -> int:
    """1 drift found (also when the check did not finish), 3 no drift in what it compared but
    it did not finish, else 0 (in flight is not drift)."""
    if check.drifted:
        return DRIFT
    return NO_DRIFT if check.complete else NO_VERDICT


class Command(BaseCommand):
    help = ("One anti-entropy check now (the relay runs one every ADMIN_RECONCILE_EVERY_SECONDS): "
            "compare the catalog by range digests, repair drift through the outbox. Exit 0: no "
            "drift (changes in flight are not drift); 1: drift found (repaired unless "
            "--no-repair); 2: the catalog is unreadable; 3: no verdict (another check held the "
            "lock for --wait seconds, or --max-seconds ran out before every id was compared "
            "and nothing drifted so far); 4: the admin database is unreadable.")

    def add_arguments(self, parser):
        add_check_arguments(parser)
        parser.add_argument("--no-repair", action="store_true", help="report only")

    def handle(self, *args, catalog_url, no_repair, grace, max_seconds, wait, **options):
        trace_id = trace_id_new()
        trace_id_set(trace_id)
        check = run_check(self, "antientropy", catalog_url=catalog_url, repair=not no_repair,
                          grace=grace, max_seconds=max_seconds, wait=wait)
        self.stdout.write(check.summary() + (f" (trace id {trace_id})" if check.repaired else ""))
        for kind in (*check.KINDS, "in_flight", "not_landing"):
            ids = getattr(check, kind)
            if ids:
                more = " ..." if len(ids) > 20 else ""
                self.stdout.write(f"  {kind:<12} {len(ids):>7}: "
                                  f"{', '.join(map(str, ids[:20]))}{more}")
        code = exit_code(check)
        if code:
            raise SystemExit(code)
