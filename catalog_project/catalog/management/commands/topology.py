from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalog_project.catalog.queues import (
    QueueUpgrade,
    UpgradeRefused,
    broker_connection,
    broker_errors_as_one_line,
    queue_states,
)
from catalog_project.topology import SUBSCRIBERS
from common.health import broker_url


class Command(BaseCommand):
    help = ("The subscribers' queues on the broker. `check`: every expected queue and DLQ "
            "exists (exit 1 naming the missing ones; 2 when the broker cannot be reached). "
            "`upgrade`: replace a subscriber's queue whose arguments changed, losing nothing "
            "while the relay publishes.")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        check = sub.add_parser("check", help="is every subscriber's queue there? (exit 1 if not)")
        check.add_argument("--subscriber", choices=sorted(SUBSCRIBERS), action="append",
                           help="only this subscriber (repeatable; default: all)")
        check.add_argument("--min-consumers", type=int, default=0,
                           help="also fail when a subscriber's queue has fewer consumers")
        upgrade = sub.add_parser("upgrade", help="redeclare a subscriber's queue with this "
                                                 "release's arguments (stop its workers first)")
        upgrade.add_argument("--subscriber", choices=sorted(SUBSCRIBERS), default="catalog",
                             help="whose queue (default catalog); connects as that worker's "
                                  "broker user (<SUBSCRIBER>_BROKER_URL, else "
                                  "CELERY_BROKER_URL)")
        upgrade.add_argument("--if-exists", action="store_true",
                             help="leave a queue that does not exist yet to its worker "
                                  "(scripts/bootstrap.py, before `make run` starts the workers)")

    def handle(self, *args, action, subscriber, **opts):
        url = broker_url()
        if action == "upgrade":
            url = settings.SUBSCRIBER_BROKER_URLS[subscriber]
        with broker_errors_as_one_line(url), broker_connection(url) as conn:
            conn.ensure_connection(max_retries=1)
            if action == "check":
                self.queues_check(conn, subscriber or sorted(SUBSCRIBERS), opts["min_consumers"])
            else:
                try:
                    summary = QueueUpgrade(conn, SUBSCRIBERS[subscriber],
                                           say=self.stdout.write,
                                           if_exists=opts.get("if_exists", False)).run()
                except UpgradeRefused as exc:
                    raise CommandError(str(exc)) from None
                except (OSError, *conn.connection_errors, *conn.channel_errors) as exc:
                    # a bound hit (CATALOG_BROKER_*_TIMEOUT: a broker alarm?): every step is
                    # idempotent and a message is acked only after its copy was confirmed
                    raise CommandError(
                        f"the broker did not answer in time ({type(exc).__name__}: "
                        f"{exc or 'timed out'}); nothing is lost, run the upgrade again") from None
                self.stdout.write(self.style.SUCCESS(summary))

    def queues_check(self, conn, names, min_consumers):
        problems = []
        for state in queue_states(conn, [SUBSCRIBERS[n] for n in names]):
            if not state.present:
                line = f"{state.queue:<28} MISSING"
                problems.append(
                    f"{state.queue} is missing: "
                    + ("events published now do not reach the "
                       f"{state.subscriber} subscriber (the relay's `mandatory` does not see "
                       "it while another subscriber's queue is bound). Start its worker or run "
                       f"`topology upgrade --subscriber {state.subscriber}` (both declare it), "
                       "then `admin_project/manage.py reconcile --repair`"
                       if state.role == "queue" else
                       f"start the {state.subscriber} worker or run `topology upgrade "
                       f"--subscriber {state.subscriber}` (both declare it)"))
            else:
                line = (f"{state.queue:<28} ok       messages={state.messages} "
                        f"consumers={state.consumers}")
                if state.role == "holding":
                    line += "  (an upgrade is in progress or was interrupted: run it again)"
                    problems.append(f"{state.queue}: upgrade of {state.subscriber} unfinished")
                elif state.role == "queue" and state.consumers < min_consumers:
                    problems.append(f"{state.queue} has {state.consumers} consumer(s), "
                                    f"fewer than {min_consumers}")
            self.stdout.write(line)
        if problems:
            raise CommandError("\n".join(problems))
        self.stdout.write(self.style.SUCCESS("every subscriber queue is there"))
