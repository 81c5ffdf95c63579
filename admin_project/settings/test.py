"""Settings for the admin pytest session (pytest --ds=admin_project.settings.test)."""

from common import settings as common

common.test_environ("ADMIN", THROTTLE_ANON="1000000/second", THROTTLE_USER="1000000/second")

from .base import *  # noqa: E402,F403

globals().update(common.test(globals()))
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
