"""The backlog gauges the admin's ``/metrics`` reads at scrape time. (The relay's own counters
are in ``publish`` and ``loop``: only the relay process imports them, so the web app's
``/metrics`` never shows relay counters stuck at zero.)"""

from django.db import DatabaseError
from prometheus_client.core import GaugeMetricFamily

from . import selectors


class OutboxCollector:
    def collect(self):
        try:
            pending, oldest_age = selectors.outbox_backlog()
            set_aside = selectors.outbox_set_aside_count()
        except DatabaseError:  # the database is down: say so, never a 500 (alert on it)
            yield GaugeMetricFamily("outbox_database_up", "1 if the outbox could be read "
                                    "at scrape time, 0 if its database is unreachable.", value=0)
            return
        yield GaugeMetricFamily("outbox_database_up", "1 if the outbox could be read at scrape "
                                "time, 0 if its database is unreachable.", value=1)
        yield GaugeMetricFamily("outbox_pending_events",
                                "Events recorded but not yet confirmed by the broker.",
                                value=pending)
        yield GaugeMetricFamily("outbox_oldest_pending_age_seconds",
                                "Age of the oldest pending outbox event (0 when none).",
                                value=oldest_age)
        yield GaugeMetricFamily("outbox_set_aside_events",
                                "Events the relay set aside: it can never send them as they "
                                "are (too large, unknown type); see docs/operations.md.",
                                value=set_aside)
