"""Settings for the catalog pytest session (pytest --ds=catalog_project.settings.test)."""

from common import settings as common

common.test_environ("CATALOG", THROTTLE_ANON="1000000/second", THROTTLE_DIGESTS="1000000/second",
                    CACHE_URL="redis://127.0.0.1:6379/14")

from .base import *  # noqa: E402,F403

globals().update(common.test(globals()))
PROBE_CACHE_SECONDS = 0  # every probe checks now (tests break and mend dependencies)
