"""Production (containers): secrets must come from the environment, secure cookies, HSTS."""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("CATALOG_SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = env.bool("CATALOG_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = env.bool("CATALOG_SECURE_COOKIES", default=True)
SECURE_HSTS_SECONDS = env.int("CATALOG_SECURE_HSTS_SECONDS", default=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
