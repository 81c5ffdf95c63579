"""Create products at a fixed rate through the admin services; print each product's commit time.

    python bench/latency_driver.py RATE SECONDS   -> JSON lines {"id": ..., "t": unix time}"""

import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "admin_project.settings.local")

import django  # noqa: E402

django.setup()

from admin_project.products import services  # noqa: E402


def main() -> None:
    rate, seconds = float(sys.argv[1]), float(sys.argv[2])
    n = int(rate * seconds)
    start = time.perf_counter()
    out = []
    for i in range(n):
        due = start + i / rate  # open loop: a slow create does not lower the offered rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        product = services.product_create(title=f"latency {i}", price=Decimal("1.00"))
        out.append({"id": product.pk, "t": time.time()})  # right after the commit
    achieved = n / (time.perf_counter() - start)
    sys.stdout.write("".join(json.dumps(o) + "\n" for o in out))
    sys.stderr.write(f"achieved {achieved:.0f}/s\n")


if __name__ == "__main__":
    main()
