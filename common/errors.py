"""Django error handlers: under /api/ the answer is JSON like DRF's own, elsewhere Django's page;
and the DEBUG error page without secrets (``DEFAULT_EXCEPTION_REPORTER``, ``..._FILTER``)."""

import logging
import os
import re
import sys

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views import defaults
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

logger = logging.getLogger("common.errors")


def not_found(request, exception):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception):
    """Django's handler400. Django turns a database error while saving the session at the end
    of a request (after a login) into SessionInterrupted, a 400: when that error is a database
    that went away, the client's request was fine and is worth repeating: 503."""
    cause, depth = exception, 0
    while cause is not None and depth < 5:  # SessionInterrupted <- UpdateError <- the error
        if _disconnect(cause):
            return _database_unavailable(request, cause)
        cause, depth = cause.__cause__ or cause.__context__, depth + 1
    return defaults.bad_request(request, exception)


def server_error(request):
    """Django's handler500. An unavailable database is a 503 here too: errors raised outside a
    view (in a middleware: the session saved after a login, the admin's messages) never reach
    ``DatabaseUnavailableMiddleware.process_exception``, but every uncaught one reaches this."""
    exception = sys.exc_info()[1]
    if exception is not None and _disconnect(exception):
        return _database_unavailable(request, exception)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)


# --- no secret in any response, DEBUG pages included ---
_CREDENTIALS_IN_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s'\"]*):[^@/\s'\"]+@")
_HIDDEN = re.compile(r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|AUTH|CREDENTIAL|COOKIE|BROKER_URL|"
                     r"DATABASE_URL|DSN", re.I)
MASK = "********************"


class SecretsFilter(SafeExceptionReporterFilter):
    """Django's filter, hiding also settings and environment variables named like a URL with
    credentials (CELERY_BROKER_URL, *_DATABASE_URL), and any ``user:password@`` in a URL."""

    hidden_settings = _HIDDEN

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        if isinstance(value, str):
            value = _CREDENTIALS_IN_URL.sub(r"\1:" + MASK + "@", value)
        return value


def _secret_values() -> list[str]:
    values = {getattr(settings, "SECRET_KEY", "")}
    for db in getattr(settings, "DATABASES", {}).values():
        values.add(db.get("PASSWORD") or "")
    values |= {v for k, v in os.environ.items() if _HIDDEN.search(k)}
    for url in list(values) + [getattr(settings, "CELERY_BROKER_URL", "") or ""]:
        match = re.search(r"://[^:/@\s]*:([^@/\s]+)@", url)
        if match:
            values.add(match.group(1))
    return sorted((v for v in values if v and len(v) >= 4), key=len, reverse=True)


class SecretsReporter(ExceptionReporter):
    """The DEBUG error page and the error mails, with every known secret value (SECRET_KEY,
    database and broker passwords, variables named like secrets) and every URL password blanked
    wherever it appears: settings, environment, frame variables, exception messages."""

    def _scrub(self, text: str) -> str:
        text = _CREDENTIALS_IN_URL.sub(r"\1:" + MASK + "@", text)
        for value in _secret_values():
            text = text.replace(value, MASK)
        return text

    def get_traceback_html(self):
        return self._scrub(str(super().get_traceback_html()))

    def get_traceback_text(self):
        return self._scrub(str(super().get_traceback_text()))


# --- hostile input that Django or the database refuses deep inside a view ---
def _bad_request(request, status: int, detail: str):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": detail}, status=status)
    return HttpResponse(f"{detail}\n", status=status, content_type="text/plain; charset=utf-8")


class HostileInputMiddleware:
    """A 400, not a 500, for input that fails below the code that validates it (a body's
    charset that is not text is refused earlier, by ``common.wsgi.guarded``):

    * the Django admin's changelist filters are lookups taken from the query string
      (``?created_at__year=-1``, ``?pk=%00``, a year of 20 digits): a ValueError, OverflowError,
      ValidationError or a value the database refuses there is the query's fault (400);
    * anywhere, a value the database refuses (DataError) or text that cannot be decoded (400).
    Each is logged as a warning with the exception."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from django.core.exceptions import ValidationError
        from django.db import DataError

        if isinstance(exception, (DataError, UnicodeError)):
            kind = "a value the database or the decoder refuses"
        elif (request.path.startswith("/admin/") and request.method in ("GET", "HEAD")
              and isinstance(exception, (ValueError, OverflowError, ValidationError))):
            kind = "a filter the admin cannot apply"
        else:
            return None
        logger.warning("400 for %s %s: %s (%s: %s)", request.method, request.path[:200], kind,
                       type(exception).__name__, str(exception)[:200])
        return _bad_request(request, 400, f"Bad request: {kind}.")


# --- the database went away under a request ---
def _disconnect(exception) -> bool:
    from django.db import InterfaceError, OperationalError

    return isinstance(exception, (OperationalError, InterfaceError))


def _commit_outcome(exception) -> str | None:
    """None when no COMMIT failed in the error (or in the errors it was raised during);
    "aborted" when one did and the server said it did not commit (``common.postgresql``:
    ``resolve_lost_commits``); "unknown" when one did and nobody could tell. A failed COMMIT
    is read from the traceback: Django's ``_commit`` is in it."""
    seen = set()
    while exception is not None and id(exception) not in seen:
        seen.add(id(exception))
        tb = exception.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_name == "_commit":
                return getattr(exception, "commit_outcome", None) or "unknown"
            tb = tb.tb_next
        exception = exception.__cause__ or exception.__context__
    return None


class DatabaseRetryMixin:
    """For DRF views: a request that lost its database connection (terminated by an
    administrator, a restart, a failover) before anything was committed runs once more on a
    new connection, so the client sees nothing of it. A read always may; a write may when the
    error came from a statement, whose transaction is rolled back, or from a COMMIT the server
    says it did not commit. A COMMIT cut off by the lost connection is resolved before that
    (``resolve_lost_commits`` of ``common.postgresql``, on for every request by
    ``DatabaseUnavailableMiddleware``): if the server committed it, the request goes on as if
    nothing had happened; if nobody can tell (the server cannot be reached), the answer is 503.
    The views' writes are one service call each (one transaction), so nothing commits
    twice."""

    def dispatch(self, request, *args, **kwargs):
        from django.db import connections

        from common.postgresql.base import connection_lost

        request.body  # noqa: B018 - read once, so that the second run parses it again
        try:
            return super().dispatch(request, *args, **kwargs)
        except Exception as exc:
            # only a lost connection is worth one more run: a statement timeout, a deadlock or a
            # serialization failure would come back after the same wait
            if not connection_lost(exc) or _commit_outcome(exc) == "unknown":
                raise
            logger.warning("%s %s lost its database connection (%s); running it once more",
                           request.method, request.path[:200], str(exc).strip()[:200])
            for conn in connections.all(initialized_only=True):
                conn.close()
        return super().dispatch(request, *args, **kwargs)


class DatabaseUnavailableMiddleware:
    """503 with Retry-After (not a 500) for a request whose database is unavailable or went
    away under it: a clear "try again", logged as a warning. All of a request's database
    waits end within ``WEB_DB_DEADLINE_SECONDS`` (5 s before gunicorn's worker timeout), so a
    database that stops answering gets that 503 in time. And, for every request (the API,
    the Django admin, the session saved after it), a COMMIT cut off by a lost connection is
    resolved by asking the server (``resolve_lost_commits`` of ``common.postgresql``): only
    when nobody can tell whether it committed does that become a 503."""

    RETRY_AFTER = "2"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.conf import settings
        from django.db import connections

        from common.postgresql.base import waits_bounded

        wrappers = connections.all()
        for conn in wrappers:
            conn.resolve_lost_commits = True
        try:
            with waits_bounded(getattr(settings, "WEB_DB_DEADLINE_SECONDS", None)):
                return self.get_response(request)
        finally:
            for conn in wrappers:
                conn.resolve_lost_commits = False

    def process_exception(self, request, exception):
        if not _disconnect(exception):
            return None
        return _database_unavailable(request, exception)


def _database_unavailable(request, exception):
    logger.warning("503 for %s %s: database unavailable (%s: %s)", request.method,
                   request.path[:200], type(exception).__name__, str(exception).strip()[:200])
    response = _bad_request(request, 503, "The database is unavailable; try again shortly.")
    response["Retry-After"] = DatabaseUnavailableMiddleware.RETRY_AFTER
    return response
