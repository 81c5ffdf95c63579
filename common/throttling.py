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
    """A sliding-window counter per client in the shared cache, O(1) per request, and fail-open.

    DRF's own throttles keep each client's whole request history (a list of timestamps) in one
    cache entry, read and written whole on every request: at the catalog's default 12,000 a
    minute that is up to ~100 KB each way per request, for every anonymous client (measured on
    the cursor list: a third of a small page's time). Here a client has two counters, this
    window's and the previous one's (Redis INCR, expiring), and a request is allowed while
    ``previous * (1 - elapsed / window) + current`` stays within the rate (the usual sliding
    window estimate: exact for steady traffic, never more than the rate over any window of
    steady traffic; a refused request is not counted, as DRF does)."""

    def allow_request(self, request, view):
        try:
            return self._allow(request, view)
        except (RedisError, OSError) as exc:  # the cache is unreachable or failing
            return _fail_open(exc)

    def _allow(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        window, now = float(self.duration), self.timer()
        slot = int(now // window)
        current_key, previous_key = f"{self.key}:{slot}", f"{self.key}:{slot - 1}"
        counts = self.cache.get_many([current_key, previous_key])
        current, previous = int(counts.get(current_key) or 0), int(counts.get(previous_key) or 0)
        elapsed = now - slot * window
        weight = 1.0 - elapsed / window
        if previous * weight + current + 1 > self.num_requests:
            # when the estimate will be below the rate again
            if current + 1 > self.num_requests or previous == 0:
                self._wait = window - elapsed
            else:
                self._wait = max(0.0, window * (1 - (self.num_requests - current - 1) / previous)
                                 - elapsed)
            return self.throttle_failure()
        _count(self.cache, current_key, ttl=int(2 * window) + 1)
        return True

    def wait(self):
        return max(1.0, getattr(self, "_wait", self.duration))


def _count(cache, key: str, *, ttl: int) -> None:
    """INCR with an expiry, in one round trip on Django's Redis cache (else its generic API)."""
    backend = getattr(cache, "_cache", None)
    if backend is not None and hasattr(backend, "get_client"):
        redis_key = cache.make_and_validate_key(key)
        client = backend.get_client(redis_key, write=True)
        with client.pipeline() as pipe:
            pipe.incr(redis_key)
            pipe.expire(redis_key, ttl)
            pipe.execute()
        return
    if not cache.add(key, 1, ttl):
        try:
            cache.incr(key)
        except ValueError:  # expired in between
            cache.add(key, 1, ttl)


class AnonRateThrottle(_FailOpen, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_FailOpen, throttling.UserRateThrottle):
    pass


class ScopedRateThrottle(_FailOpen, throttling.ScopedRateThrottle):
    """A view's own rate (``throttle_scope``), per client: for the expensive ones."""

    def _allow(self, request, view):
        # what DRF's ScopedRateThrottle.allow_request does before counting: the view's scope
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super()._allow(request, view)


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
