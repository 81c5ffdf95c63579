"""Settings for the admin pytest session (pytest --ds=admin_project.settings.test)."""

from common import settings as common

# Throttles no test reaches, counted in a Redis database of the tests' own (cache.clear() empties
# it: never the one `make run` uses).
common.test_environ("ADMIN", THROTTLE_ANON="1000000/second", THROTTLE_USER="1000000/second",
                    THROTTLE_LOGIN="1000000/second", CACHE_URL="redis://127.0.0.1:6379/15")

from .base import *  # noqa: E402,F403

globals().update(common.test(globals()))
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PROBE_CACHE_SECONDS = 0  # every probe checks now (tests break and mend dependencies)
