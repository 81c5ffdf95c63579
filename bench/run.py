"""`make bench`: every benchmark scenario in one run on this machine, so ratios are fair.

Writes bench/results/<timestamp>.json and .png, and prints each figure beside its target.
BENCH_N (default 50000) sets the drain size; BENCH_SMALL=1 shrinks everything (smoke run)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402
import psycopg2  # noqa: E402
import requests  # noqa: E402
from kombu import Connection, Exchange, Queue  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from psycopg2.extras import execute_values  # noqa: E402

from bench.cpu import broker_pid, busy_seconds, group_seconds, process_seconds  # noqa: E402
from harness import processes  # noqa: E402
from harness.amqp import queue_depth  # noqa: E402
from harness.stack import Stack, http_up, procfile, running_stack  # noqa: E402
from harness.waiting import wait_until  # noqa: E402
from product_events import contract  # noqa: E402
from product_events.message import task_message_encode  # noqa: E402

SMALL = os.environ.get("BENCH_SMALL") == "1"
# the smoke run drains 20 messages: fewer leave a window shorter than /proc/stat's 10 ms tick
N = int(os.environ.get("BENCH_N", 2_000 if SMALL else 50_000))
RESYNC_N = 500 if SMALL else 1_000_000
ANTIENTROPY_N = 5_000 if SMALL else 1_000_000
ANTIENTROPY_DRIFTED = 10
MEMORY_N = 1_000 if SMALL else 200_000
RATES = [(50, 2), (200, 2)] if SMALL else [(50, 10), (200, 10), (1000, 5)]
HTTP_SECONDS = 2 if SMALL else 6  # the seed-inline run
# "with events" vs "without": two admins (outbox, off) run side by side and the load switches
# between them every HTTP_WINDOW seconds (A B B A ...); the ratio is the median over the pairs of
# adjacent windows. This machine's speed drifts by 20% within a minute: adjacent short windows
# see the same machine, separate runs do not.
HTTP_WINDOW = 1.0 if SMALL else 2.0
HTTP_WINDOWS = 4 if SMALL else 40
LONG_WAIT = 120 if SMALL else 900  # seconds; a stuck stage fails with its name, not a hang
PER_MESSAGE = 100
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PRODUCTS = Exchange(contract.EXCHANGE, "topic", durable=True)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def envelope(pid: int, version: int = 1) -> dict:
    at = (T0 + timedelta(seconds=version)).isoformat().replace("+00:00", "Z")
    return {"event_id": str(uuid.uuid4()), "type": "product.created", "product_id": pid,
            "version": version, "occurred_at": at,
            "data": {"id": pid, "title": f"Bench product {pid}", "image":
                     f"https://img.example/{pid}.png", "price": f"{pid % 1000}.99",
                     "description": "A product of about three hundred bytes of JSON, "
                     "like the ones the admin sends.", "version": version,
                     "created_at": at, "updated_at": at}}


def task_messages(n: int, per_message: int, start_id: int = 1) -> list:
    """The task messages of ``n`` new products, ``per_message`` events each (encoded ahead, so
    that publishing them is quick)."""
    return [task_message_encode(events=[envelope(pid) for pid in
                                        range(first, min(first + per_message, start_id + n))],
                                origin="bench")
            for first in range(start_id, start_id + n, per_message)]


def publish_messages(stack: Stack, messages: list, *, queue: str | None = None) -> None:
    """To the products exchange (as the relay publishes), or straight to ``queue``. With
    publisher confirms, as the relay publishes: without them RabbitMQ may drop the last messages
    of a fast burst into a quorum queue when the connection closes right after it (27 of 500
    100-event messages vanished that way on 2026-12-07, and the drain waited for them)."""
    with Connection(stack.env["CELERY_BROKER_URL"],
                    transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        for message in messages:
            producer.publish(message.body, exchange="" if queue else PRODUCTS,
                             routing_key=queue or message.routing_key,
                             headers=message.headers, **message.properties, retry=False)


def publish_tasks(stack: Stack, n: int, per_message: int, start_id: int = 1) -> None:
    publish_messages(stack, task_messages(n, per_message, start_id))


def publish_seed_messages(stack: Stack, queue: str, n: int) -> None:
    with Connection(stack.env["CELERY_BROKER_URL"]) as conn:
        q = Queue(queue, durable=True)(conn.default_channel)
        q.declare()
        q.purge()
        producer = conn.Producer()
        for pid in range(1, n + 1):
            producer.publish(json.dumps(envelope(pid)).encode(), exchange="", routing_key=queue,
                             content_type="application/json", content_encoding="utf-8",
                             delivery_mode=2, retry=False)


_COUNTING: dict[str, object] = {}


def catalog_count(stack: Stack) -> int:
    """Polled every 20 ms while a drain runs: one kept connection, not a new backend per poll
    (that would add its own CPU to the drain's CPU per event)."""
    url = stack.env["CATALOG_DATABASE_URL"]
    conn = _COUNTING.get(url)
    if conn is None or conn.closed:
        conn = _COUNTING[url] = psycopg2.connect(url, connect_timeout=5)
        conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM catalog_product")
        return cur.fetchone()[0]


def truncate_catalog(stack: Stack) -> None:
    stack.sql("catalog", "TRUNCATE catalog_product")


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


class CpuSampler:
    """Machine CPU (``busy_seconds``) sampled 20 times a second with the wall-clock time, so
    that the CPU of any window (the database's own timestamps of a drain) can be read after."""

    def __init__(self) -> None:
        import threading

        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), busy_seconds()))
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.samples.append((time.time(), busy_seconds()))

    def between(self, start: float, end: float) -> float:
        """CPU seconds from ``start`` to ``end`` (wall-clock), linear between samples."""
        def at(t: float) -> float:
            prev = self.samples[0]
            for sample in self.samples:
                if sample[0] >= t:
                    if sample[0] == prev[0]:
                        return sample[1]
                    share = (t - prev[0]) / (sample[0] - prev[0])
                    return prev[1] + max(0.0, min(1.0, share)) * (sample[1] - prev[1])
                prev = sample
            return prev[1]
        return at(end) - at(start)


def drain_span(stack: Stack) -> tuple[float, float]:
    """(first, last) transaction start of the drain's writes: PostgreSQL's ``now()`` in
    ``applied_at``, the same clock and the same statement for the Celery drain and for its
    ceiling, read once the drain is over (no query during it)."""
    ((first, last),) = stack.sql("catalog", "SELECT extract(epoch FROM min(applied_at)), "
                                            "extract(epoch FROM max(applied_at)) "
                                            "FROM catalog_product")
    return float(first), float(last)


def drained(stack: Stack, n: int, queue: str) -> None:
    """Wait for the end of a drain without loading the machine during it: the queue's depth (a
    passive declare, every 0.1 s) until it is empty, then the row count for the last messages
    in flight."""
    with Connection(stack.env["CELERY_BROKER_URL"]) as conn:
        channel = conn.default_channel
        wait_until(lambda: channel.queue_declare(queue, passive=True).message_count == 0,
                   timeout=LONG_WAIT, interval=0.1, message=f"{queue} drained")
    wait_until(lambda: catalog_count(stack) >= n, timeout=LONG_WAIT, interval=0.1,
               message="every row written")


def drain_result(stack: Stack, n: int, cpu: CpuSampler, **extra) -> dict:
    cpu.stop()
    first, last = drain_span(stack)
    seconds = max(last - first, 1e-6)
    return {"events": n, "seconds": seconds, "events_per_s": n / seconds,
            "events_per_message": PER_MESSAGE,
            "cpu_ms_per_event": cpu.between(first, last) / n * 1000, **extra}


def drain_celery(stack: Stack, n: int, processes: int, per_message: int = PER_MESSAGE) -> dict:
    """``processes`` catalog worker processes as `make run` starts one (.env.example: the
    thread pool, CATALOG_WORKER_CONCURRENCY threads each), competing consumers of a full queue
    of ``n`` events, ``per_message`` a message."""
    truncate_catalog(stack)
    messages = task_messages(n, per_message)
    command = procfile()["worker"]
    # every worker running before the first message: each consumes from the start (one that
    # started late would make "2 processes" partly one), the messages published after
    started = [stack.start("worker", command.replace("-n catalog@%h", f"-n catalog{i}@%h")
                           if i else command) for i in range(processes)]
    for proc in started:
        wait_until(lambda p=proc: " ready." in p.log() or not p.alive(), timeout=60,
                   message=lambda p=proc: f"worker ready:\n{p.tail()}")
    cpu = CpuSampler()
    publish_messages(stack, messages)  # ~2,000 messages/s: far ahead of any drain
    drained(stack, n, "catalog.products")
    out = drain_result(stack, n, cpu, processes=processes,
                       threads=int(stack.env["CATALOG_WORKER_CONCURRENCY"]))
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.popen.wait(30)
    return out


def drain_baseline(stack: Stack, mode: str, n: int) -> dict:
    truncate_catalog(stack)
    queue = f"bench.{mode}"
    publish_seed_messages(stack, queue, n)
    out = subprocess.run([sys.executable, "bench/consumers.py", mode, queue, str(n)], cwd=REPO,
                         env=stack.env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert catalog_count(stack) == n
    with Connection(stack.env["CELERY_BROKER_URL"]) as conn:
        conn.default_channel.queue_delete(queue)
    return json.loads(out.stdout.strip().splitlines()[-1])


SAME_QUEUE = "bench.same"
DRAIN_ROUNDS = 1 if SMALL else 3


def same_queue_declare(stack: Stack) -> None:
    """A quorum queue of the bench's own for the same-message ceiling, empty."""
    with Connection(stack.env["CELERY_BROKER_URL"]) as conn:
        q = Queue(SAME_QUEUE, durable=True, queue_arguments={"x-queue-type": "quorum"})(
            conn.default_channel)
        q.declare()
        q.purge()


def drain_same(stack: Stack, n: int, processes: int) -> dict:
    """The same-message ceiling: ``processes`` raw pika consumers of the same task messages,
    timed like the Celery drain (the database's timestamps of the first and last write)."""
    truncate_catalog(stack)
    messages = task_messages(n, PER_MESSAGE)
    same_queue_declare(stack)
    procs = [subprocess.Popen([sys.executable, "bench/consumers.py", "same", SAME_QUEUE, str(n)],
                              cwd=REPO, env=stack.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    for proc in procs:  # each prints "ready" once connected, before its first message
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    cpu = CpuSampler()
    publish_messages(stack, messages, queue=SAME_QUEUE)  # as for the Celery drain
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=LONG_WAIT)
        assert proc.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert catalog_count(stack) == n and sum(o["events"] for o in outs) == n
    return drain_result(stack, n, cpu, processes=processes)


def db_limit(stack: Stack, n: int) -> dict:
    truncate_catalog(stack)
    out = subprocess.run([sys.executable, "bench/consumers.py", "db", "-", str(n)], cwd=REPO,
                         env=stack.env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert catalog_count(stack) == n
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median_run(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["events_per_s"])
    return ordered[len(ordered) // 2] | {"rounds": [r["events_per_s"] for r in runs]}


def drains_interleaved(stack: Stack, n: int) -> dict:
    """Celery with 1 and 2 processes, the same-message ceiling with 1 and 2, and the database
    alone, interleaved over DRAIN_ROUNDS rounds (this machine's speed drifts within minutes:
    each ratio compares runs of the same rounds); the median run of each."""
    runs: dict[str, list[dict]] = {k: [] for k in ("celery_1", "same_1", "celery_2", "same_2",
                                                   "db")}
    for i in range(DRAIN_ROUNDS):
        log(f"drains, round {i + 1} of {DRAIN_ROUNDS}: Celery 1/2, same-message 1/2, db alone")
        runs["celery_1"].append(drain_celery(stack, n, 1))
        runs["same_1"].append(drain_same(stack, n, 1))
        runs["celery_2"].append(drain_celery(stack, n, 2))
        runs["same_2"].append(drain_same(stack, n, 2))
        runs["db"].append(db_limit(stack, n))
    with Connection(stack.env["CELERY_BROKER_URL"]) as conn:
        conn.default_channel.queue_delete(SAME_QUEUE)
    return {k: _median_run(v) for k, v in runs.items()}


def fill_outbox(stack: Stack, n: int) -> None:
    now = datetime.now(UTC)
    rows = []
    for pid in range(1, n + 1):
        env = envelope(pid)
        rows.append((env["event_id"], env["type"], pid, 1, json.dumps(env), now))
    with contextlib.closing(psycopg2.connect(stack.env["ADMIN_DATABASE_URL"])) as conn, conn, \
            conn.cursor() as cur:
        cur.execute("TRUNCATE products_outboxevent")
        execute_values(cur, "INSERT INTO products_outboxevent (event_id, type, product_id, "
                            "version, payload, occurred_at) VALUES %s", rows, page_size=2000)


def relay_throughput(stack: Stack, n: int) -> dict:
    fill_outbox(stack, n)
    out = stack.manage("admin_project", "relay", "--once")
    assert out.returncode == 0, out.stderr
    published, seconds = out.stdout.split("published ")[1].split(" events in ")
    seconds = float(seconds.rstrip("s\n"))
    with Connection(stack.env["CELERY_BROKER_URL"]) as conn:
        conn.default_channel.queue_purge("catalog.products")
    return {"events": int(published), "seconds": seconds, "events_per_s": int(published) / seconds}


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency(stack: Stack, rate: int, seconds: int) -> dict:
    # one driver process per 500 creates/s, each keeping its schedule (open loop). Through the
    # ORM a create cost a driver ~1.6 ms of CPU, and four drivers reached 681-784 of 1,000/s on
    # the cores the pipeline uses; the driver now writes the same rows in one statement (~0.17 ms)
    drivers = max(1, -(-rate // 500))
    procs = [subprocess.Popen([sys.executable, "bench/latency_driver.py", str(rate / drivers),
                               str(seconds)], cwd=REPO, env=stack.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(drivers)]
    commits = {}
    achieved = 0.0
    for p in procs:
        out, err = p.communicate(timeout=seconds * 10 + 60)
        assert p.returncode == 0, err
        for line in out.splitlines():
            o = json.loads(line)
            commits[o["id"]] = o["t"]
        achieved += float(err.split("achieved ")[1].split("/s")[0])
    ids = list(commits)
    wait_until(lambda: stack.sql("catalog", "SELECT count(*) FROM catalog_product WHERE id = "
                                            "ANY(%s)", [ids])[0][0] == len(ids),
               timeout=120, interval=0.1, message="latency events applied")
    applied = dict(stack.sql("catalog", "SELECT id, extract(epoch FROM applied_at) FROM "
                                        "catalog_product WHERE id = ANY(%s)", [ids]))
    lat = [(float(applied[i]) - commits[i]) * 1000 for i in ids]
    return {"rate": rate, "achieved_rate": achieved, "events": len(ids),
            "p50_ms": percentile(lat, 0.50), "p95_ms": percentile(lat, 0.95),
            "p99_ms": percentile(lat, 0.99), "max_ms": max(lat), "samples": lat}


def settle(stack: Stack) -> None:
    """Start each HTTP phase from a vacuumed, checkpointed database: otherwise the autovacuum
    and checkpoints owed to the stages before (drains, relay, latency) land in its windows."""
    for db in ("admin", "catalog"):
        url = stack.env[f"{db.upper()}_DATABASE_URL"]
        with contextlib.closing(psycopg2.connect(url, connect_timeout=5)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("VACUUM (ANALYZE)")
                cur.execute("CHECKPOINT")


def admin_token(stack: Stack, url: str) -> str:
    wait_until(lambda: http_up(f"{url}/admin/login/"), timeout=60, message=f"admin up at {url}")
    return stack.admin_session().headers["Authorization"].split()[1]


def http_load(token: str, seconds: float, urls: list[str], window: float | None = None) -> dict:
    argv = [sys.executable, "bench/http_load.py", token, "8", str(seconds),
            *[f"{u}/api/products/" for u in urls]]
    out = subprocess.run(argv + (["--window", str(window)] if window else []), cwd=REPO,
                         capture_output=True, text=True, timeout=seconds * 10 + 60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def bench_admin_command() -> str:
    """The Procfile's admin, with bench/admin_settings.py: events recorded the way
    BENCH_EVENT_DELIVERY says (off, seed-inline) instead of in the outbox."""
    command = procfile()["admin"]
    assert "admin_project.settings.local" in command, command
    return command.replace("admin_project.settings.local", "bench.admin_settings")


def http_outbox_vs_off(stack: Stack, *, pipeline: bool) -> tuple[list[dict], list[dict]]:
    """The stack's admin records events (outbox); a second admin on another port, same
    databases and settings, does not (off). Both serve while the load alternates between them."""
    stack.restart("admin")
    port = processes.free_port()
    off = processes.Proc(f"{stack.name}-admin-off", ["sh", "-c", bench_admin_command()],
                         stack.env | {"ADMIN_PORT": str(port), "BENCH_EVENT_DELIVERY": "off"})
    try:
        off_url = f"http://127.0.0.1:{port}"
        token = admin_token(stack, stack.admin)
        admin_token(stack, off_url)
        settle(stack)
        before = pipeline_usage(stack) if pipeline else None
        out = http_load(token, HTTP_WINDOW * HTTP_WINDOWS, [stack.admin, off_url], HTTP_WINDOW)
        if pipeline:  # the relay has sent every event by now: the load's last one lingered
            wait_until(lambda: stack.outbox()[1] == 0, timeout=60, interval=0.05,
                       message="outbox sent after the HTTP load")
            wait_until(lambda: queue_depth("catalog.products", stack.env["CELERY_BROKER_URL"])
                       == 0, timeout=60, interval=0.05, message="queue drained after the load")
            used = pipeline_usage(stack)
            out["pipeline"] = {k: used[k] - before[k] for k in used}
    finally:
        off.stop()
    modes = ("outbox", "off")
    runs = [h | {"mode": m, "pipeline": pipeline} | ({"usage": out["pipeline"]} if pipeline and
                                                      m == "outbox" else {})
            for m, h in zip(modes, out["servers"], strict=True)]
    windows = [w | {"mode": modes[w["server"]], "pipeline": pipeline} for w in out["windows"]]
    return runs, windows


def pipeline_usage(stack: Stack) -> dict:
    """What the pipeline has done and spent so far: events and messages the relay published (its
    counters), and the CPU seconds of the relay's and the worker's processes and of RabbitMQ."""
    bind = stack.env["ADMIN_RELAY_METRICS_BIND"]
    text = requests.get(f"http://{bind}/metrics", timeout=10).text
    counters = {s.name: s.value for family in text_string_to_metric_families(text)
                for s in family.samples}
    broker = broker_pid()
    return {"events": counters["relay_events_published_total"],
            "messages": counters["relay_messages_published_total"],
            "relay_cpu_s": group_seconds(stack.proc("relay").pid),
            "worker_cpu_s": group_seconds(stack.proc("worker").pid),
            "broker_cpu_s": process_seconds(broker) if broker else float("nan")}


def http_seed_inline(stack: Stack) -> dict:
    """The seed's way: a pika publish inside the view (one connection per request)."""
    stack.env["BENCH_EVENT_DELIVERY"] = "seed-inline"
    stack.restart("admin", bench_admin_command())
    with Connection(stack.env["CELERY_BROKER_URL"]) as conn:
        Queue("bench.seed", durable=True)(conn.default_channel).declare()
    try:
        token = admin_token(stack, stack.admin)
        settle(stack)
        return http_load(token, HTTP_SECONDS, [stack.admin]) | {"mode": "seed-inline",
                                                                 "pipeline": True}
    finally:
        stack.env.pop("BENCH_EVENT_DELIVERY")  # the next phase restarts the admin as built


def resync(stack: Stack, n: int) -> dict:
    stack.sql("admin", "TRUNCATE products_outboxevent")
    stack.sql("admin", "TRUNCATE products_product RESTART IDENTITY CASCADE")
    truncate_catalog(stack)
    stack.sql("admin", "INSERT INTO products_product (title, image, price, description, version,"
                       " created_at, updated_at) SELECT 'Resync ' || g, 'https://img.example/' "
                       "|| g || '.png', (g %% 1000) + 0.99, 'resync bench', 1, now(), now() "
                       "FROM generate_series(1, %s) g", [n])
    t0 = time.perf_counter()
    out = stack.manage("admin_project", "resync", "--restart", "--rate", "0", timeout=LONG_WAIT)
    assert out.returncode == 0, out.stderr
    command = time.perf_counter() - t0  # it publishes every event (confirmed) before it ends
    wait_until(lambda: catalog_count(stack) >= n, timeout=LONG_WAIT, interval=0.2,
               message="resync applied")
    seconds = time.perf_counter() - t0
    # the database alone, same run: as many rows through the catalog's own upsert, 100 per
    # transaction, from memory (no admin, outbox, relay, broker or worker)
    db = db_limit(stack, n)
    return {"products": n, "seconds": seconds, "command_s": command,
            "db_seconds": db["seconds"], "vs_db": seconds / db["seconds"]}


def antientropy(stack: Stack, n: int, drifted: int = ANTIENTROPY_DRIFTED) -> dict:
    """``n`` products equal on both sides, ``drifted`` of them drifted in the catalog (missing,
    older, other content, deleted there though live here); one anti-entropy check (the relay's,
    run as `manage.py antientropy`) with relay and worker running: rows read, seconds until all
    are repaired in the catalog."""
    stack.sql("admin", "TRUNCATE products_outboxevent")
    stack.sql("admin", "TRUNCATE products_product, products_producttombstone "
                       "RESTART IDENTITY CASCADE")
    truncate_catalog(stack)
    at = "'2026-01-01T00:00:00Z'::timestamptz"
    stack.sql("admin", "INSERT INTO products_product (title, image, price, description, version,"
                       f" created_at, updated_at) SELECT 'AE ' || g, '', (g %% 1000) + 0.99, "
                       f"'anti-entropy bench', 1, {at}, {at} FROM generate_series(1, %s) g", [n])
    stack.sql("catalog", "INSERT INTO catalog_product (id, title, image, price, description, "
                         "version, updated_at, deleted, last_event_id, applied_at, last_trace_id) "
                         "SELECT g, 'AE ' || g, '', (g %% 1000) + 0.99, 'anti-entropy bench', 1, "
                         f"{at}, false, md5(g::text)::uuid, now(), '' "
                         "FROM generate_series(1, %s) g", [n])
    stack.sql("catalog", "ANALYZE catalog_product")
    stack.sql("admin", "ANALYZE products_product")
    step = n // drifted
    ids = [1 + i * step + (i * 7919) % max(1, step) for i in range(drifted)]
    kinds = ["missing", "content", "deleted_there", "behind"]
    for i, pid in enumerate(ids):
        kind = kinds[i % len(kinds)]
        if kind == "missing":
            stack.sql("catalog", "DELETE FROM catalog_product WHERE id = %s", [pid])
        elif kind == "content":
            stack.sql("catalog", "UPDATE catalog_product SET title = 'edited' WHERE id = %s",
                      [pid])
        elif kind == "deleted_there":
            stack.sql("catalog", "UPDATE catalog_product SET deleted = true WHERE id = %s", [pid])
        else:  # the admin moved on, the catalog never heard
            stack.sql("admin", "UPDATE products_product SET version = 2, title = 'AE v2' "
                               "WHERE id = %s", [pid])

    def repaired() -> bool:
        theirs = dict(((i, (v, t, d)) for i, v, t, d in stack.sql(
            "catalog", "SELECT id, version, title, deleted FROM catalog_product "
                       "WHERE id = ANY(%s)", [ids])))
        mine = {i: (v, t, False) for i, v, t in stack.sql(
            "admin", "SELECT id, version, title FROM products_product WHERE id = ANY(%s)", [ids])}
        return theirs == mine

    assert not repaired()
    t0 = time.perf_counter()
    out = stack.manage("admin_project", "antientropy", "--catalog-url", stack.catalog,
                       timeout=LONG_WAIT)
    checked = time.perf_counter() - t0
    assert out.returncode == 1, out.stdout + out.stderr  # drift found (and repaired)
    line = out.stdout.splitlines()[0]
    compared, rows_read = (int(x) for x in re.findall(r"compared (\d+) products, read (\d+) rows",
                                                       line)[0])
    wait_until(repaired, timeout=LONG_WAIT, interval=0.2, message="anti-entropy repairs applied")
    return {"products": n, "drifted": drifted, "compared": compared, "rows_read": rows_read,
            "check_s": checked, "repaired_s": time.perf_counter() - t0, "summary": line}


LIST_PAGE = 10_000  # the largest cursor page (common.pagination: cursor_max_page_size)
NUMBERED_PAGE = 500  # the largest ?page_size= numbered pages allow
LIST_COLUMNS = "id, title, image, price, description, version, updated_at, last_trace_id"


class ListedProduct(msgspec.Struct, gc=False):
    """A product of the catalog's list API, with the types its OpenAPI schema gives."""

    id: int
    title: str
    image: str
    price: str
    description: str
    version: int
    updated_at: str
    last_trace_id: str


class ListPage(msgspec.Struct, gc=False):
    """A cursor page of the catalog's list API."""

    next: str | None
    previous: str | None
    results: list[ListedProduct]


LIST_DECODER = msgspec.json.Decoder(ListPage)


def list_catalog(stack: Stack, page_size: int = LIST_PAGE) -> dict:
    """Read every live catalog product (the rows the anti-entropy stage left: 1,000,000) page
    by page, as a syncing consumer does: through the API with the cursor (``?cursor=``,
    ``page_size`` a page, one HTTP session with ``requests``, each body decoded into typed
    records with msgspec: ``ListPage``), against a keyset SQL scan of the same rows and
    columns, the same number a page, from this process (``id > last ORDER BY id LIMIT
    page_size``, psycopg2 building each row's typed values). The two scans advance in step, a
    page of each in turn (which goes first alternates), so that both see the same machine: its
    speed drifts by 3x within minutes. Each body is also parsed with ``json.loads`` (what
    ``resp.json()`` does), timed apart and not counted in the API's time: ``json_loads_s``
    says what a client decoding into dicts would add. Then the time of one deep numbered page
    (``?page=``, the middle of the table, 500 a page: the most ``?page=`` allows) beside the
    cursor's average page."""
    stack.sql("catalog", "ANALYZE catalog_product")
    sql_s = api_s = loads_s = decode_s = 0.0
    sql_rows = api_rows = pages = sql_pages = last = 0
    url = f"{stack.catalog}/api/products/?page_size={page_size}&cursor="
    sql_done = False
    with contextlib.closing(psycopg2.connect(stack.env["CATALOG_DATABASE_URL"])) as conn, \
            conn.cursor() as cur, requests.Session() as session:

        def api_page() -> None:
            nonlocal url, api_s, api_rows, pages, loads_s, decode_s
            t0 = time.perf_counter()
            resp = session.get(url, timeout=60)
            resp.raise_for_status()
            t1 = time.perf_counter()
            page = LIST_DECODER.decode(resp.content)
            t2 = time.perf_counter()
            api_s += t2 - t0
            decode_s += t2 - t1
            json.loads(resp.content)
            loads_s += time.perf_counter() - t2
            api_rows, pages, url = api_rows + len(page.results), pages + 1, page.next

        def sql_page() -> None:
            nonlocal sql_done, sql_s, sql_rows, sql_pages, last
            t0 = time.perf_counter()
            cur.execute(f"SELECT {LIST_COLUMNS} FROM catalog_product WHERE NOT deleted AND "
                        "id > %s ORDER BY id LIMIT %s", [last, page_size])
            rows = cur.fetchall()
            sql_s += time.perf_counter() - t0
            if rows:
                sql_rows, sql_pages, last = sql_rows + len(rows), sql_pages + 1, rows[-1][0]
            sql_done = len(rows) < page_size

        while url or not sql_done:
            for step in ((api_page, sql_page) if pages % 2 == 0 else (sql_page, api_page)):
                if (url if step is api_page else not sql_done):
                    step()
        assert api_rows == sql_rows, (api_rows, sql_rows)
        deep = max(1, sql_rows // NUMBERED_PAGE // 2)
        t0 = time.perf_counter()
        resp = session.get(f"{stack.catalog}/api/products/?page_size={NUMBERED_PAGE}"
                           f"&page={deep}", timeout=60)
        deep_s = time.perf_counter() - t0
        resp.raise_for_status()
    return {"products": api_rows, "pages": pages, "sql_pages": sql_pages,
            "page_size": page_size, "api_s": api_s, "sql_s": sql_s, "vs_sql": api_s / sql_s,
            "cursor_page_ms": api_s / pages * 1000, "decode_s": decode_s,
            "json_loads_s": loads_s, "deep_page": deep,
            "deep_page_size": NUMBERED_PAGE, "deep_page_ms": deep_s * 1000}


def worker_memory(stack: Stack, n: int) -> dict:
    truncate_catalog(stack)
    stack.env["CATALOG_WORKER_CONCURRENCY"] = "2"
    stack.start("worker")
    stack.wait_worker_ready()
    pids = [stack.worker_main_pid(), *stack.worker_children()]
    publish_tasks(stack, 2_000, PER_MESSAGE, start_id=10_000_000)  # warm up
    wait_until(lambda: catalog_count(stack) >= 2_000, timeout=120, interval=0.05)
    start_rss = rss_kb(pids)
    batch = 20_000
    for first in range(0, n, batch):
        publish_tasks(stack, min(batch, n - first), PER_MESSAGE, start_id=1 + first)
    wait_until(lambda: catalog_count(stack) >= n + 2_000, timeout=LONG_WAIT, interval=0.2,
               message=lambda: f"memory run drained ({catalog_count(stack)} of {n + 2_000}):\n"
                               f"{stack.proc('worker').tail(20)}")
    pids = [stack.worker_main_pid(), *stack.worker_children()]
    end_rss = rss_kb(pids)
    stack.kill("worker")
    return {"events": n, "rss_start_mb": start_rss / 1024, "rss_end_mb": end_rss / 1024,
            "growth_pct": (end_rss - start_rss) / start_rss * 100}


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    bars = [("seed-style\nconsumer", results["drain"]["seed"]["events_per_s"]),
            ("Celery\n1 process", results["drain"]["celery_1"]["events_per_s"]),
            ("Celery\n2 processes", results["drain"]["celery_2"]["events_per_s"]),
            ("raw pika,\nsame messages", results["drain"]["same_1"]["events_per_s"]),
            ("raw pika,\nsame, 2 proc", results["drain"]["same_2"]["events_per_s"]),
            ("database\nalone", results["drain"]["db"]["events_per_s"]),
            ("relay\n(confirms)", results["relay"]["events_per_s"])]
    colors = ["#999999", "#4c72b0", "#4c72b0", "#dd8452", "#55a868"]
    ax1.bar([b[0] for b in bars], [b[1] for b in bars], color=colors)
    for i, (_, v) in enumerate(bars):
        ax1.text(i, v, f"{v:,.0f}", ha="center", va="bottom")
    ax1.set_ylabel("events per second")
    ax1.set_title(f"Throughput (N = {results['n']:,} events)")
    for r in results["latency"]:
        ax2.hist(r["samples"], bins=60, histtype="step", linewidth=1.5,
                 label=f"{r['rate']}/s: p99 {r['p99_ms']:.1f} ms")
    ax2.set_xlabel("admin commit -> catalog row written (ms)")
    ax2.set_ylabel("events")
    ax2.set_yscale("log")
    ax2.set_title("End-to-end latency")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(r: dict) -> str:
    """The figures, each beside its target; under a figure that misses its target, what this
    run measured of its cause ("why")."""
    d, seed = r["drain"], r["drain"]["seed"]["events_per_s"]
    eps = {k: d[k]["events_per_s"] for k in ("celery_1", "celery_2", "same_1", "same_2", "db")}
    cpu_event = {k: d[k]["cpu_ms_per_event"] for k in eps}
    best = max(d["celery_1"]["events_per_s"], d["celery_2"]["events_per_s"])
    http = {h["mode"]: h for h in r["http"] if h["pipeline"]}
    alone = {h["mode"]: h for h in r["http"] if not h["pipeline"]}
    ratio_whole = paired_ratio(r["http_windows"], pipeline=True)
    ratio_alone = paired_ratio(r["http_windows"], pipeline=False)
    linger_ms = r.get("relay_linger_max_ms")
    rows: list[tuple] = []

    def row(figure: str, measured: str, target: str = "", met: bool | None = None,
            why: str = "") -> None:
        rows.append((figure, measured, target, met, why))

    row(f"catalog drain, Celery, 1 worker process ({d['celery_1'].get('threads', '?')} "
        "threads)", f"{eps['celery_1']:,.0f} ev/s")
    row(f"catalog drain, Celery, 2 worker processes ({d['celery_2'].get('threads', '?')} "
        "threads each)", f"{eps['celery_2']:,.0f} ev/s")
    row("same messages, raw pika, 1 process (ceiling)", f"{eps['same_1']:,.0f} ev/s")
    row("same messages, raw pika, 2 processes (ceiling)", f"{eps['same_2']:,.0f} ev/s")
    row("the same upserts from memory (database alone)", f"{eps['db']:,.0f} ev/s")
    row("seed-style consumer (auto-ack, ORM save)", f"{seed:,.0f} ev/s")
    row("  machine CPU per event: Celery 1 / ceiling 1 / Celery 2 / ceiling 2 / db",
        " / ".join(f"{cpu_event[k]:.3f}" for k in
                   ("celery_1", "same_1", "celery_2", "same_2", "db")) + " ms")
    for n in (1, 2):
        ratio = eps[f"celery_{n}"] / eps[f"same_{n}"]
        row(f"  drain / same-message ceiling, {n} process{'es' if n > 1 else ''} "
            f"(median of {DRAIN_ROUNDS})", f"{ratio * 100:.1f}%", ">= 85%", ratio >= 0.85,
            drain_why(cpu_event[f"celery_{n}"], cpu_event[f"same_{n}"]))
    row("  same-message ceiling (best) / database alone",
        f"{max(eps['same_1'], eps['same_2']) / eps['db'] * 100:.0f}%")
    row("  drain vs seed-style", f"{best / seed:.1f}x", ">= 5x", best / seed >= 5)
    relay_eps = r["relay"]["events_per_s"]
    row("relay, outbox -> broker with confirms", f"{relay_eps:,.0f} ev/s", ">= 5,000 ev/s",
        relay_eps >= 5_000)
    for x in r["latency"]:
        limit = {200: 25, 1000: 50}.get(x["rate"])
        row(f"latency at {x['rate']}/s (achieved {x['achieved_rate']:.0f}/s)",
            f"p50 {x['p50_ms']:.1f} / p95 {x['p95_ms']:.1f} / p99 {x['p99_ms']:.1f} / "
            f"max {x['max_ms']:.1f} ms",
            "" if limit is None else f"p99 <= {limit} ms" + (" at 1000/s" if limit == 50 else ""),
            None if limit is None else (x["p99_ms"] <= limit
                                        and x["achieved_rate"] >= 0.95 * x["rate"]),
            latency_why(x, linger_ms, relay_eps))
    pairs = lambda ratio: (f"range {ratio['pairs'][0] * 100:.0f}-{ratio['pairs'][-1] * 100:.0f},"  # noqa: E731
                           f" middle half {ratio['q1'] * 100:.0f}-{ratio['q3'] * 100:.0f}")
    for mode in ("outbox", "off"):
        h = alone[mode]
        row(f"HTTP create, events {mode} (relay+worker paused)",
            f"{h['rps']:,.0f} req/s, p99 {h['p99_ms']:.1f} ms, {h['errors']} errors")
    cpu = {k: h["cpu_ms_per_request"] for k, h in
           (("whole", http["outbox"]), ("path", alone["outbox"]), ("off", alone["off"]))}
    row(f"  with events vs without, request path (median of {len(ratio_alone['pairs'])} pairs)",
        f"{ratio_alone['median'] * 100:.1f}% ({pairs(ratio_alone)})", ">= 95%",
        ratio_alone["median"] >= 0.95,
        f"the outbox row (one INSERT carrying the NOTIFY) costs {cpu['path'] - cpu['off']:+.2f} "
        f"ms of machine CPU a request ({cpu['path']:.2f} against {cpu['off']:.2f} ms with "
        f"events off); single pairs of 2 s windows ranged "
        f"{ratio_alone['pairs'][0] * 100:.0f}-{ratio_alone['pairs'][-1] * 100:.0f}%")
    for mode in ("outbox", "off", "seed-inline"):
        h = http[mode]
        row(f"HTTP create, events {mode} (whole system)", f"{h['rps']:,.0f} req/s, p99 "
            f"{h['p99_ms']:.1f} ms, {h['errors']} errors")
    bound = whole_system_bound(r)
    pipeline = pipeline_figures(http["outbox"].get("usage"))
    row(f"  with events vs without, whole system (median of {len(ratio_whole['pairs'])} pairs)",
        f"{ratio_whole['median'] * 100:.1f}% ({pairs(ratio_whole)})",
        f">= 85% (bound here: {bound * 100:.0f}%)", ratio_whole["median"] >= 0.85,
        whole_why(pipeline, cpu_event["same_1"], linger_ms))
    row("  machine CPU per request: events off / request path / whole system",
        f"{cpu['off']:.2f} / {cpu['path']:.2f} / {cpu['whole']:.2f} ms")
    if pipeline:
        row("  pipeline in that run: events a message; CPU an event: relay / worker / RabbitMQ",
            f"{pipeline['per_message']:.1f}; {pipeline['relay']:.2f} / "
            f"{pipeline['worker']:.2f} / {pipeline['broker']:.2f} ms")
    row("  bound: request path + the ceiling consumer's CPU per event",
        f"{bound * 100:.0f}% (any pipeline on these cores costs more)")
    rs = r["resync"]
    row(f"resync of {rs['products']:,} products, end to end",
        f"{rs['seconds']:.1f} s = {rs['vs_db']:.2f}x the database alone "
        f"({rs['db_seconds']:.1f} s, same rows)", "<= 2x the database alone", rs["vs_db"] <= 2,
        f"the command ran {rs['command_s']:.1f} s of the {rs['seconds']:.1f} s (it publishes "
        "each batch and waits for its confirms); the catalog held every product "
        f"{rs['seconds'] - rs['command_s']:.1f} s after it finished")
    row("  the resync command itself (publishing, confirmed)", f"{rs['command_s']:.1f} s")
    ae = r.get("antientropy")
    if ae:
        share = ae["rows_read"] / ae["products"]
        row(f"anti-entropy: {ae['products']:,} products, {ae['drifted']} drifted",
            f"{ae['compared']:,} compared, {ae['rows_read']:,} rows read "
            f"({share * 100:.2f}%), check {ae['check_s']:.1f} s, all repaired "
            f"{ae['repaired_s']:.1f} s", "< 1% rows, <= 60 s",
            share < 0.01 and ae["repaired_s"] <= 60,
            f"{ae['rows_read']:,} rows read to find {ae['drifted']} drifted among "
            f"{ae['products']:,}: the check compares digests of ranges of ids and reads the rows "
            "of each range that differs, and descends; in a small table such a range is a "
            f"large share of it; the repairs took {ae['repaired_s']:.1f} s")
    ls = r.get("list")
    if ls:
        sql_page_ms = ls["sql_s"] / max(1, ls["sql_pages"]) * 1000
        row(f"list {ls['products']:,} catalog products, API with ?cursor= ({LIST_PAGE} a page)",
            f"{ls['api_s']:.1f} s = {ls['vs_sql']:.2f}x a keyset SQL scan "
            f"({ls['sql_s']:.1f} s, same rows)", "<= 2x the SQL scan", ls["vs_sql"] <= 2,
            f"a page costs the client {ls['cursor_page_ms']:.1f} ms through the API (the "
            "request, the catalog's query, its rows written as JSON, the client's decoding: "
            f"{ls['decode_s'] / max(1, ls['pages']) * 1000:.1f} ms) against "
            f"{sql_page_ms:.1f} ms for the same page by SQL")
        row("  client's decoding of the pages: msgspec (counted) / json.loads",
            f"{ls['decode_s']:.1f} / {ls['json_loads_s']:.1f} s (with json.loads: "
            f"{(ls['api_s'] - ls['decode_s'] + ls['json_loads_s']) / ls['sql_s']:.2f}x)")
        row(f"  one page: cursor (average) / ?page= deep (numbered page {ls['deep_page']:,})",
            f"{ls['cursor_page_ms']:.1f} / {ls['deep_page_ms']:.1f} ms")
    m = r["memory"]
    row(f"worker RSS over {m['events']:,} events", f"{m['rss_start_mb']:.0f} -> "
        f"{m['rss_end_mb']:.0f} MB ({m['growth_pct']:+.1f}%)", "< 10%", m["growth_pct"] < 10)
    width = max(len(a) for a, *_ in rows)
    lines = [f"{'figure':<{width}}  {'measured':<52} target", "-" * (width + 70)]
    for figure, measured, target, met, why in rows:
        status = "" if met is None else ("  [met]" if met else "  [NOT MET]")
        lines.append(f"{figure:<{width}}  {measured:<52} {target}{status}".rstrip())
        if met is False and why:
            lines.append(f"{'':<{width}}    why: {why}")
    if not any(x["rate"] == 200 for x in r["latency"]):
        lines.append("(no 200/s latency run)")
    met = [x[3] for x in rows if x[3] is not None]
    lines.append(f"{sum(met)} of {len(met)} targets met in this run")
    return "\n".join(lines)


def drain_why(celery_ms: float, ceiling_ms: float) -> str:
    """What this run measured of a drain's shortfall against the same-message ceiling."""
    if celery_ms > ceiling_ms:
        return (f"the Celery worker spent {celery_ms:.3f} ms of machine CPU an event against "
                f"{ceiling_ms:.3f} ms for the ceiling: {(celery_ms - ceiling_ms) * PER_MESSAGE:.1f}"
                f" ms more a {PER_MESSAGE}-event message (Celery's consumer loop and request "
                "objects, task events, the hand-off to its threads, the log line, metrics)")
    return (f"not its CPU: the Celery worker spent {celery_ms:.3f} ms of machine CPU an event, "
            f"the ceiling {ceiling_ms:.3f} ms; the drain's process waited longer between "
            "messages (its consumer loop hands each one to a thread)")


def latency_why(x: dict, linger_ms: float | None, relay_eps: float) -> str:
    if x["achieved_rate"] < 0.95 * x["rate"]:
        return (f"the drivers reached {x['achieved_rate']:.0f} of {x['rate']} creates/s on "
                "these cores")
    linger = (f"up to {linger_ms:.0f} ms of it is the relay's linger under load "
              "(ADMIN_RELAY_LINGER_MAX_SECONDS: events share messages), " if linger_ms else "")
    return (f"{linger}the rest is the relay, RabbitMQ and the worker at this machine's speed "
            f"(p50 {x['p50_ms']:.1f} ms; the relay published {relay_eps:,.0f} ev/s flat out in "
            "this run)")


def pipeline_figures(usage: dict | None) -> dict | None:
    """Events per message and CPU ms per event of the relay, the worker and RabbitMQ, from
    ``pipeline_usage``'s difference over the whole-system load (None if nothing was sent)."""
    if not usage or not usage["events"]:
        return None
    per = {k: usage[f"{k}_cpu_s"] / usage["events"] * 1000 for k in ("relay", "worker", "broker")}
    return per | {"per_message": usage["events"] / max(1, usage["messages"])}


def whole_why(pipeline: dict | None, ceiling_ms: float, linger_ms: float | None) -> str:
    if pipeline is None:
        return "(the pipeline's own figures were not recorded)"
    linger = (f", at most {linger_ms:.0f} ms of linger, which the 200/s latency target bounds"
              if linger_ms else "")
    spent = pipeline["relay"] + pipeline["worker"] + pipeline["broker"]
    return (f"at this rate the relay's messages carried {pipeline['per_message']:.1f} events "
            f"(100 in the ceiling's){linger}; the relay, the worker and RabbitMQ spent "
            f"{spent:.2f} ms of CPU an event (both databases' share not counted), the "
            f"ceiling consumer {ceiling_ms:.3f} ms all told")


def whole_system_bound(r: dict) -> float:
    """The best "with events / without" any pipeline could reach while it shares these cores
    with the web workers: each request keeps its request-path cost, and each event also costs at
    least what the same-message ceiling consumer spends on it (no relay, no broker publish)."""
    off = next(h for h in r["http"] if not h["pipeline"] and h["mode"] == "off")
    path = paired_ratio(r["http_windows"], pipeline=False)["median"]
    per_event = r["drain"]["same_1"]["cpu_ms_per_event"]
    return 1 / (1 / path + per_event / off["cpu_ms_per_request"])


def paired_ratio(windows: list[dict], *, pipeline: bool) -> dict:
    """Adjacent windows (0, 1), (2, 3), ... hold one outbox and one off window each."""
    mine = [w for w in windows if w["pipeline"] == pipeline]
    ratios = []
    for first, second in zip(mine[::2], mine[1::2], strict=False):  # an odd last one: unpaired
        by_mode = {first["mode"]: first["rps"], second["mode"]: second["rps"]}
        if by_mode.get("off"):
            ratios.append(by_mode["outbox"] / by_mode["off"])
    ratios.sort()
    n = len(ratios)
    return {"pairs": ratios, "median": ratios[n // 2], "q1": ratios[n // 4],
            "q3": ratios[min(n - 1, (3 * n) // 4)]}


def main() -> None:
    results: dict = {"n": N, "small": SMALL, "started": datetime.now(UTC).isoformat(),
                     "machine": {"cores": os.cpu_count()}}
    # (the list stage reads 2,000 pages: more than the anonymous limit allows one client)
    overrides = {"CATALOG_WEB_WORKERS": "1", "ADMIN_WEB_WORKERS": "2",
                 "CATALOG_THROTTLE_ANON": "1000000/minute"}
    with running_stack("bench", start=("admin", "catalog", "worker"),
                       overrides=overrides) as stack:
        linger = stack.env.get("ADMIN_RELAY_LINGER_MAX_SECONDS")
        results["relay_linger_max_ms"] = float(linger) * 1000 if linger else None
        stack.kill("worker")  # the topology is declared; drains start with a full queue
        log(f"catalog drain: {N:,} events, Celery vs the same messages consumed raw, "
            f"{DRAIN_ROUNDS} interleaved rounds")
        results["drain"] = drains_interleaved(stack, N)
        log("seed-style consumer")
        results["drain"]["seed"] = drain_baseline(stack, "seed", N)
        log(f"relay: {N:,} outbox rows")
        results["relay"] = relay_throughput(stack, N)
        stack.sql("admin", "TRUNCATE products_outboxevent")
        truncate_catalog(stack)
        stack.start("worker")
        stack.wait_worker_ready()
        stack.start("relay")
        # warm-up: the first events after a start pay for connections being opened
        latency(stack, 20, 1)
        results["latency"] = []
        for rate, seconds in RATES:
            log(f"latency at {rate} events/s for {seconds}s")
            results["latency"].append(latency(stack, rate, seconds))
        log(f"HTTP create, events outbox vs off, {HTTP_WINDOWS} interleaved windows of "
            f"{HTTP_WINDOW:.0f}s")
        results["http"], results["http_windows"] = http_outbox_vs_off(stack, pipeline=True)
        log("HTTP create, events seed-inline")
        results["http"].append(http_seed_inline(stack))
        log("HTTP create, events outbox vs off, relay and worker paused (the request path alone)")
        stack.kill("relay")
        stack.kill("worker")
        runs, windows = http_outbox_vs_off(stack, pipeline=False)
        results["http"] += runs
        results["http_windows"] += windows
        stack.sql("admin", "UPDATE products_outboxevent SET sent_at = now()")
        stack.start("worker")
        stack.wait_worker_ready()
        stack.start("relay")
        log(f"resync of {RESYNC_N:,} products")
        results["resync"] = resync(stack, RESYNC_N)
        log(f"anti-entropy over {ANTIENTROPY_N:,} products, {ANTIENTROPY_DRIFTED} drifted")
        results["antientropy"] = antientropy(stack, ANTIENTROPY_N)
        log("list every catalog product through the API with the cursor, and one deep page")
        results["list"] = list_catalog(stack)
        stack.kill("relay")
        stack.kill("worker")
        log(f"worker memory over {MEMORY_N:,} events")
        results["memory"] = worker_memory(stack, MEMORY_N)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stamp}.json").write_text(json.dumps(results, indent=2))
    chart(results, out_dir / f"{stamp}.png")
    print()
    print(table(results))
    print(f"\nresults: bench/results/{stamp}.json, chart: bench/results/{stamp}.png")


def _exit_on_sigterm(signum, frame):
    raise SystemExit(f"bench: stopped by signal {signum}")  # runs the stack's cleanup


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    main()
