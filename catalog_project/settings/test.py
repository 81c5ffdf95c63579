"""Settings for the catalog pytest session (pytest --ds=catalog_project.settings.test)."""

import os

os.environ.setdefault("CATALOG_SECRET_KEY", "test-only-not-secret")
os.environ.setdefault("CATALOG_THROTTLE_ANON", "1000000/second")

from .base import *  # noqa: E402,F403

DEBUG = False
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
MIDDLEWARE = [m for m in MIDDLEWARE if "whitenoise" not in m]  # noqa: F405
