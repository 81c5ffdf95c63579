from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalog_project.catalog.dlq import DeadLetters, ReplayFailed
from catalog_project.catalog.queues import broker_errors_as_one_line
from catalog_project.topology import SUBSCRIBERS


class Command(BaseCommand):
    help = ("A subscriber's dead-letter queue (catalog.products.dlq by default): list with "
            "reasons, replay, purge.")

    def add_arguments(self, parser):
        parser.add_argument("--subscriber", choices=sorted(SUBSCRIBERS), default="catalog",
                            help="whose DLQ (default catalog; audit: audit.products.dlq); "
                                 "connects as that worker's broker user (<SUBSCRIBER>_BROKER_URL, "
                                 "else CELERY_BROKER_URL)")
        sub = parser.add_subparsers(dest="action", required=True)
        ls = sub.add_parser("list", help="show parked messages and why (removes nothing)")
        ls.add_argument("--limit", type=int, default=100)
        rp = sub.add_parser("replay", help="send parked messages back to the subscriber's queue")
        rp.add_argument("ids", nargs="*", help="task ids or event ids to replay")
        rp.add_argument("--all", action="store_true", help="replay every parked message")
        pg = sub.add_parser("purge", help="delete every parked message")
        pg.add_argument("--yes", action="store_true", help="really delete them")

    def handle(self, *args, action, subscriber, **opts):
        url = settings.SUBSCRIBER_BROKER_URLS[subscriber]
        with broker_errors_as_one_line(url), DeadLetters(url, SUBSCRIBERS[subscriber]) as dlq:
            if action == "list":
                limit = opts["limit"]
                parked = dlq.read(limit=limit)
                for p in parked:
                    copies = f"  ({p.count} copies)" if p.count > 1 else ""
                    self.stdout.write(f"{p.index:>4}  task {p.task_id}{copies}\n"
                                      f"      reason: {p.reason}\n      {p.summary}")
                    if len(p.task_ids) > 1:  # each park of an event has its own task id
                        others = ", ".join(p.task_ids[1:6]) + (", ..." * (len(p.task_ids) > 6))
                        self.stdout.write(f"      copies also as task {others}")
                read = sum(p.count for p in parked)
                more = dlq.ready() if limit is not None and read >= limit else 0
                copies = _copies(read - len(parked))
                totals = (f"the first {read} of {read + more} in the queue, --limit {limit}; "
                          f"{copies} among them" if more else f"{read} in the queue, {copies}")
                self.stdout.write(f"{len(parked)} parked message(s) shown ({totals})")
            elif action == "replay":
                if not opts["ids"] and not opts["all"]:
                    raise CommandError("name task/event ids to replay, or --all")
                wanted = set(opts["ids"])
                parked = dlq.read()
                chosen = [p for p in parked if opts["all"] or p.matches(wanted)]
                unknown = sorted(wanted - {i for p in chosen for i in (*p.task_ids, *p.events)})
                try:
                    n = dlq.replay(chosen)
                except ReplayFailed as exc:
                    raise CommandError(str(exc)) from None  # one line, exit status 1
                removed = sum(len(p.copies) for p in chosen)
                self.stdout.write(self.style.SUCCESS(
                    f"replayed {n} message(s); {len(parked) - n} left parked; "
                    f"{_copies(removed)} removed with them"))
                if unknown:  # a typo must not look like success
                    raise CommandError(f"not in {dlq.queue}: {', '.join(unknown)}")
            else:
                if not opts["yes"]:
                    raise CommandError("purge deletes every parked message: add --yes")
                self.stdout.write(f"purged {dlq.purge()} message(s)")


def _copies(n: int) -> str:
    return f"{n} duplicate {'copy' if n == 1 else 'copies'}"
