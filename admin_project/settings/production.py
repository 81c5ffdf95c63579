"""Production (containers): secrets only from the environment, HTTPS-only cookies, HSTS.
Passes ``manage.py check --deploy --fail-level WARNING`` with its defaults (a test runs it).
compose.yaml turns the HTTPS settings off for a plain-HTTP localhost demo."""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("ADMIN_SECURE_SSL_REDIRECT", default=True)
# Probes and scrapes come over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("ADMIN_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = env.bool("ADMIN_SECURE_COOKIES", default=True)
SECURE_HSTS_SECONDS = env.int("ADMIN_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("ADMIN_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("ADMIN_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
