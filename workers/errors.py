"""Which errors of a subscriber's write are about the events (parked) and which are about the
database (held and retried, never parked): ``transient``."""

from __future__ import annotations

import psycopg2
from django.db import DatabaseError, InterfaceError, OperationalError

# What can never succeed, and is parked: an event the contract refuses, or whose values the
# database refuses, SQLSTATE classes 22 (data exception: a value too long, out of range, ...), 23
# (integrity constraint violation) and 54 (program limit exceeded: an index row too big); the
# events of a message are then applied one by one to find which. Everything else the database or
# its driver raises is about the database, not the events (unreachable, a broken connection,
# read-only, out of disk, a lock or statement timeout, a deadlock, a missing grant or
# migration): transient, held and retried until it goes through, never parked.
REFUSED_VALUES = ("22", "23", "54")
# ... but for a NOT NULL violation: the contract's events carry every value a subscriber writes
# (none may be null), so a missing one is a column the code does not know: a migration deployed
# ahead of the code that fills it. That is an outage of the write path, not a bad event.
SCHEMA_AHEAD = ("23502",)
# psycopg2's own classes too: a service writing through the raw cursor (execute_values) gets them
# unwrapped by Django.
CONNECTION_ERRORS = (OperationalError, InterfaceError, psycopg2.OperationalError,
                      psycopg2.InterfaceError)
_DATABASE_ERRORS = (DatabaseError, InterfaceError, psycopg2.Error)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (Django's wrapper or psycopg2's), if the server sent one."""
    seen = 0
    while exc is not None and seen < 5:
        code = getattr(exc, "pgcode", None)
        if code:
            return code
        exc, seen = exc.__cause__, seen + 1
    return None


def transient(exc: BaseException) -> bool:
    """Is ``exc`` about the database rather than the events (retry it, never park)? A
    connection-level error without a SQLSTATE is; a database error with one is unless it is in
    ``REFUSED_VALUES`` (a NOT NULL violation is: ``SCHEMA_AHEAD``); an error the driver raised
    about a value (no SQLSTATE) and anything that is not a database error at all (a bug in
    ``apply``) are not."""
    if not isinstance(exc, _DATABASE_ERRORS):
        return False
    code = sqlstate(exc)
    if code is None:
        return isinstance(exc, CONNECTION_ERRORS)
    return code[:2] not in REFUSED_VALUES or code in SCHEMA_AHEAD
