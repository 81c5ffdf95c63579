"""Production (containers): secrets only from the environment, HTTPS-only cookies, HSTS.
Passes ``manage.py check --deploy --fail-level WARNING`` with its defaults (a test runs it).
compose.yaml turns the HTTPS settings off for a plain-HTTP localhost demo."""

from common.settings import production

from .base import *  # noqa: F403
from .base import env

globals().update(production(env, "CATALOG"))
