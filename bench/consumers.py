"""Baselines for the catalog drain, run as:  python bench/consumers.py MODE QUEUE N

* seed: what the seed project's consumer.py did: pika, auto-ack, one Django ORM save per message.
* raw:  pika, manual ack, one multi-row upsert and commit per 100 one-event messages.
* same: the honest ceiling of the Celery drain: pika consuming **the same Celery task messages**
  the worker consumes (100 events each), one upsert + commit + ack per message. Several of these
  run side by side as competing consumers (``N`` is then this process's stop condition: it stops
  when the queue stays empty for a second); each prints its first and last message times.
* db:   the database alone: the same upserts of N events from memory, 100 per commit (QUEUE is
  ignored).
Each writes into the catalog database (CATALOG_DATABASE_URL) and prints a JSON line."""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_project.settings.local")

import django  # noqa: E402

django.setup()

import pika  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import transaction  # noqa: E402

from bench.cpu import busy_seconds  # noqa: E402
from catalog_project.catalog.models import Product  # noqa: E402
from catalog_project.catalog.services import ProductRow, product_rows_upsert  # noqa: E402

CPU_AT_START: list[float] = []  # machine CPU when the first message arrived


def seed(channel, queue: str, n: int) -> float:
    state = {"count": 0, "t0": None}

    def on_message(ch, method, properties, body):
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
            CPU_AT_START.append(busy_seconds())
        e = json.loads(body)
        d = e["data"]
        Product(id=e["product_id"], title=d["title"], image=d["image"], price=d["price"],
                description=d["description"], version=e["version"], updated_at=d["updated_at"],
                last_event_id=e["event_id"], applied_at=d["updated_at"]).save()
        state["count"] += 1
        if state["count"] >= n:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message, auto_ack=True)
    channel.start_consuming()
    return time.perf_counter() - state["t0"]


def raw(channel, queue: str, n: int, batch: int = 100) -> float:
    channel.basic_qos(prefetch_count=batch * 5)
    rows, count, t0 = [], 0, None
    last_tag = None
    for method, _props, body in channel.consume(queue, auto_ack=False):
        if t0 is None:
            t0 = time.perf_counter()
            CPU_AT_START.append(busy_seconds())
        e = json.loads(body)
        d = e["data"]
        rows.append(ProductRow(e["product_id"], d["title"], d["image"], d["price"],
                               d["description"], e["version"], d["updated_at"], False,
                               e["event_id"], e.get("trace_id", "")))
        last_tag = method.delivery_tag
        count += 1
        if len(rows) >= batch or count >= n:
            with transaction.atomic():
                product_rows_upsert(rows=rows)
            channel.basic_ack(last_tag, multiple=True)
            rows = []
        if count >= n:
            break
    channel.cancel()
    return time.perf_counter() - t0


def _row(e: dict) -> ProductRow:
    d = e["data"]
    return ProductRow(e["product_id"], d["title"], d["image"], d["price"], d["description"],
                      e["version"], d["updated_at"], False, e["event_id"], e.get("trace_id", ""))


def same(channel, queue: str, n: int, prefetch: int = 4) -> dict:
    """Competing consumer of Celery task messages: stops after a second without a message."""
    channel.basic_qos(prefetch_count=prefetch)
    events, first, last, idle = 0, None, None, 0
    own_first = own_last = 0.0
    cpu_first = cpu_last = 0.0
    for method, _props, body in channel.consume(queue, auto_ack=False, inactivity_timeout=1.0):
        if method is None:
            idle += 1
            if events or idle >= 5:  # drained (by the others, if this one got nothing)
                break
            continue
        if first is None:
            first, cpu_first = time.time(), busy_seconds()
            own_first = time.process_time()
        rows = [_row(e) for e in json.loads(body)[1]["events"]]
        with transaction.atomic():
            product_rows_upsert(rows=rows)
        channel.basic_ack(method.delivery_tag)
        events += len(rows)
        last, cpu_last = time.time(), busy_seconds()
        own_last = time.process_time()
    channel.cancel()
    return {"events": events, "first": first, "last": last, "cpu_first": cpu_first,
            "cpu_last": cpu_last, "own_cpu": (own_last - own_first) if events else 0.0}


def db_only(n: int, batch: int = 100, start_id: int = 1) -> dict:
    from bench.run import envelope

    batches = [[_row(envelope(pid)) for pid in range(first, min(first + batch, start_id + n))]
               for first in range(start_id, start_id + n, batch)]
    t0, cpu0 = time.perf_counter(), busy_seconds()
    for rows in batches:
        with transaction.atomic():
            product_rows_upsert(rows=rows)
    seconds, cpu = time.perf_counter() - t0, busy_seconds() - cpu0
    return {"mode": "db", "events": n, "seconds": seconds, "events_per_s": n / seconds,
            "cpu_ms_per_event": cpu / n * 1000}


def main() -> None:
    mode, queue, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "db":
        print(json.dumps(db_only(n)))
        return
    conn = pika.BlockingConnection(pika.URLParameters(settings.CELERY_BROKER_URL))
    channel = conn.channel()
    if mode == "same":
        print("ready", flush=True)
        out = same(channel, queue, n)
        conn.close()
        print(json.dumps({"mode": mode, **out}))
        return
    elapsed = (seed if mode == "seed" else raw)(channel, queue, n)
    cpu = busy_seconds() - CPU_AT_START[0]
    conn.close()
    print(json.dumps({"mode": mode, "events": n, "seconds": elapsed,
                      "events_per_s": n / elapsed, "cpu_ms_per_event": cpu / n * 1000}))


if __name__ == "__main__":
    main()
