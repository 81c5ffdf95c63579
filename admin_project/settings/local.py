"""Local development (make run)."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("ADMIN_DEBUG", default=True)
