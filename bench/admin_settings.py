"""BENCHMARK ONLY: the admin's local settings plus ``bench.delivery``, which swaps how product
changes record events (``BENCH_EVENT_DELIVERY``: off or seed-inline; see bench/delivery)."""

from admin_project.settings.local import *  # noqa: F403
from admin_project.settings.local import INSTALLED_APPS, env

INSTALLED_APPS = [*INSTALLED_APPS, "bench.delivery"]
BENCH_EVENT_DELIVERY = env("BENCH_EVENT_DELIVERY", default="off")
if BENCH_EVENT_DELIVERY not in ("off", "seed-inline"):
    raise ValueError(f"BENCH_EVENT_DELIVERY must be off or seed-inline: {BENCH_EVENT_DELIVERY}")
