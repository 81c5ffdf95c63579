"""API throttles of both projects, counted in the shared cache (Redis: ``<PREFIX>_CACHE_URL``),
so a limit holds across every gunicorn worker and host that serves the API.

If the cache is unreachable the request is let through and a warning logged (at most once a
minute): a rate limit that turns a Redis outage into an API outage would be worse than none."""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata

from django.http import HttpResponse
from redis.exceptions import RedisError
from rest_framework import throttling

logger = logging.getLogger("common.throttling")
_last_warning = 0.0


def _fail_open(exc: Exception) -> bool:
    global _last_warning
    if time.monotonic() - _last_warning > 60:
        _last_warning = time.monotonic()
        logger.warning("throttle cache unreachable (%s: %s); requests are not rate-limited "
                       "until it is back", type(exc).__name__, exc)
    return True


class _FailOpen:
    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError) as exc:  # the cache is unreachable or failing
            return _fail_open(exc)


class AnonRateThrottle(_FailOpen, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_FailOpen, throttling.UserRateThrottle):
    pass


class ScopedRateThrottle(_FailOpen, throttling.ScopedRateThrottle):
    """A view's own rate (``throttle_scope``), per client: for the expensive ones."""


class LoginRateThrottle(_FailOpen, throttling.SimpleRateThrottle):
    """Password attempts (the API's token endpoint and the Django admin's login form share it):
    ``login`` rate per client address."""

    scope = "login"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginUsernameRateThrottle(LoginRateThrottle):
    """The same rate per account name, whatever the address (a guesser spread over many)."""

    scope = "login"

    def get_cache_key(self, request, view):
        # a body that does not parse raises ParseError here: DRF answers 400, as the view would
        data = getattr(request, "data", None) or request.POST
        username = data.get("username") if hasattr(data, "get") else None
        if not isinstance(username, str) or not username:
            return None
        # the name as Django compares it (DRF trims it, the admin's form NFKC-normalises it:
        # " admin\t" and fullwidth "ａdmin" log in as "admin"), case-folded; hashed, so any string
        # (control characters, lone surrogates, 1 MB) makes a valid cache key
        name = unicodedata.normalize("NFKC", username.strip()).casefold()
        name = name[:150].encode("utf-8", "surrogatepass")
        return self.cache_format % {"scope": "login-user",
                                    "ident": hashlib.sha256(name).hexdigest()}


LOGIN_THROTTLES = (LoginRateThrottle, LoginUsernameRateThrottle)


def login_throttled(view):
    """Wrap a Django login view (``admin.site.login``): a POST beyond a login throttle gets 429
    with Retry-After, like the API's token endpoint."""
    def wrapped(request, *args, **kwargs):
        if request.method == "POST":
            for throttle in (cls() for cls in LOGIN_THROTTLES):
                if not throttle.allow_request(request, None):
                    wait = throttle.wait() or 60
                    response = HttpResponse("Too many login attempts; try again later.\n",
                                            status=429, content_type="text/plain")
                    response["Retry-After"] = str(max(1, int(wait)))
                    return response
        return view(request, *args, **kwargs)

    return wrapped
