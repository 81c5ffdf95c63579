"""Settings for the admin pytest session (pytest --ds=admin_project.settings.test)."""

import os

os.environ.setdefault("ADMIN_SECRET_KEY", "test-only-not-secret")
os.environ.setdefault("ADMIN_THROTTLE_ANON", "1000000/second")
os.environ.setdefault("ADMIN_THROTTLE_USER", "1000000/second")

from .base import *  # noqa: E402,F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
MIDDLEWARE = [m for m in MIDDLEWARE if "whitenoise" not in m]  # noqa: F405
