"""Local development (make run)."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("CATALOG_DEBUG", default=True)
