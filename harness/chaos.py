"""`make chaos`: a randomized fault run in the style of Jepsen's nemesis.

The whole system (admin, catalog, relay, catalog and audit workers) runs on fresh databases and
on a private RabbitMQ node (harness/private_rabbit.py: a stopped or alarmed broker must never be
the shared one). A load thread writes products over HTTP at a fixed rate (creates, updates,
deletes) and records every acknowledged write. A nemesis plays a schedule of faults drawn from a
seeded random generator (the seed is printed: ``--seed`` repeats the schedule), overlapping when
they touch different parts. After ``--seconds`` every fault is healed, the load stops, and one
checker (harness/checker.py) judges the end state: every acknowledged write visible in the
catalog at the admin's final version, nothing lost, stale, resurrected or invented, no HTTP 5xx,
the DLQs holding exactly the injected poison, converged within 60 s of the last heal.

    python -m harness.chaos --seconds 600 [--seed N] [--rate 10] [--json PATH]

Exit status 0 when the verdict is ok, 1 otherwise. ``tests/faults/test_chaos.py`` runs 60 s with
a fixed seed in `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg2
import requests
from kombu import Connection, Exchange

from harness import checker, pg, private_rabbit, processes
from harness.poison import valid_event
from harness.stack import Stack, running_stack
from harness.waiting import wait_until
from product_events import contract

CONVERGE_WITHIN = 60.0
PRODUCTS = Exchange(contract.EXCHANGE, "topic", durable=True)
# short bounds so that a blocked publish or a dead broker is noticed in seconds (the defaults
# are minutes: right for production, too slow for a 60-second run)
OVERRIDES = {
    "CATALOG_BROKER_IO_TIMEOUT": "3", "CATALOG_BROKER_CONFIRM_TIMEOUT": "3",
    "AUDIT_BROKER_IO_TIMEOUT": "3", "AUDIT_BROKER_CONFIRM_TIMEOUT": "3",
    "CATALOG_PUBLISH_FAILED_PAUSE": "1", "CATALOG_PUBLISH_FAILED_PAUSE_MAX": "2",
    "AUDIT_PUBLISH_FAILED_PAUSE": "1", "AUDIT_PUBLISH_FAILED_PAUSE_MAX": "2",
    "ADMIN_RELAY_IO_TIMEOUT": "3", "ADMIN_RELAY_CONFIRM_TIMEOUT": "3",
    "CATALOG_PAUSE_HOLD_SECONDS": "5", "AUDIT_PAUSE_HOLD_SECONDS": "5",
    # both pools under faults: the catalog worker runs the default (threads), the audit worker
    # prefork, whose pool children the nemesis kills
    "AUDIT_WORKER_POOL": "prefork",
    # the relay's anti-entropy check runs under the faults too, as in production (short: a
    # 60-second run sees a few)
    "ADMIN_RECONCILE_EVERY_SECONDS": "20",
    # with production's grace (the harness's 0 is for tests that make drift on purpose): what
    # the faults delay is in flight, not drift
    "ADMIN_ANTIENTROPY_GRACE_SECONDS": "600",
}


# --- the schedule ---------------------------------------------------------------------------

@dataclass
class Kind:
    name: str
    resource: str               # faults on the same resource never overlap
    duration: tuple[float, float] = (0.0, 0.0)  # how long it lasts before its heal (0: instant)


KINDS = [
    Kind("broker stopped", "broker", (2, 12)),
    Kind("broker connections closed", "broker"),
    Kind("broker memory alarm", "broker", (3, 12)),
    # the catalog worker runs the default thread pool (no pool children: a frozen process is
    # its closest fault); the audit worker runs prefork here, so a pool child dies too
    Kind("catalog worker frozen (SIGSTOP)", "worker", (1, 8)),
    Kind("catalog worker SIGKILLed", "worker", (0.5, 6)),
    Kind("audit worker pool child SIGKILLed", "audit"),
    Kind("audit worker SIGKILLed", "audit", (0.5, 6)),
    Kind("relay SIGKILLed", "relay", (0.5, 6)),
    Kind("catalog database unavailable", "catalog_db", (4, 25)),
    # reads answer, writes are refused (a standby, a failover in progress)
    Kind("catalog database read-only", "catalog_db", (4, 20)),
    # writes wait on a lock (a migration, a long maintenance statement)
    Kind("catalog table locked", "catalog_db", (3, 15)),
    Kind("database connections terminated", "db_conns"),
    Kind("duplicates and reordering injected", "inject"),
    Kind("poison injected", "inject"),
]
# the cluster faults join this list when a multi-node test bed exists


@dataclass
class Planned:
    at: float
    kind: str
    duration: float
    param: int


def schedule(seed: int, seconds: float, *, gap=(0.5, 5.0)) -> list[Planned]:
    """The faults of a run, from ``seed`` alone: the same seed, the same faults at the same
    offsets. A fault starts only on a resource that is free (its previous fault healed)."""
    rnd = random.Random(seed)
    busy: dict[str, float] = {}
    plan, t = [], rnd.uniform(*gap)
    while t < seconds:
        free = [k for k in KINDS if busy.get(k.resource, 0) <= t]
        if free:
            kind = rnd.choice(free)
            duration = round(rnd.uniform(*kind.duration), 1) if kind.duration[1] else 0.0
            duration = min(duration, max(0.0, seconds - t))
            busy[kind.resource] = t + duration + 1.0
            plan.append(Planned(at=round(t, 1), kind=kind.name, duration=duration,
                                param=rnd.randrange(1_000_000)))
        t += rnd.uniform(*gap)
    return plan


# --- the load -------------------------------------------------------------------------------

class Load(threading.Thread):
    """Fixed-rate HTTP writes to the admin API; records every acknowledged one."""

    def __init__(self, stack: Stack, *, rate: float, seed: int):
        super().__init__(name="chaos-load", daemon=True)
        self.stack, self.rate, self.rnd = stack, rate, random.Random(seed ^ 0x5EED)
        self.stop_event = threading.Event()
        self.writes: dict[int, checker.Write] = {}
        self.creates: dict[str, str] = {}   # description -> answered | unanswered | refused
        self.live: list[int] = []
        self.statuses: dict[str, int] = {}
        self.errors: list[str] = []
        self.sent = 0
        self.started = self.ended = 0.0

    def _count(self, key: str) -> None:
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def _one(self, session: requests.Session) -> None:
        api = f"{self.stack.admin}/api/products/"
        roll = self.rnd.random()
        price = f"{self.rnd.randint(0, 99999) / 100:.2f}"
        marker = f"created by chaos write {self.sent}"
        if len(self.live) < 20 or roll < 0.4:
            op, pid = "create", None
            call = lambda: session.post(api, timeout=15, json={  # noqa: E731
                "title": f"chaos {self.sent}", "price": price, "description": marker})
        elif roll < 0.85:
            op, pid = "update", self.rnd.choice(self.live)
            call = lambda: session.patch(f"{api}{pid}/", timeout=15, json={  # noqa: E731
                "title": f"chaos {self.sent} (updated)", "price": price})
        else:
            op, pid = "delete", self.rnd.choice(self.live)
            call = lambda: session.delete(f"{api}{pid}/", timeout=15)  # noqa: E731
        self.sent += 1
        try:
            resp = call()
        except requests.RequestException as exc:
            self._count(f"{op} error")
            self.errors.append(f"{op} {pid}: {exc!r}")
            status = None
        else:
            status = resp.status_code
            self._count(f"{op} {status}")
            if status >= 500:
                self.errors.append(f"{op} {pid}: {status} {resp.text[:200]}")
        # no answer (or a 5xx: a failure the server did not explain) leaves the outcome unknown
        answered = status is not None and status < 500
        if op == "create":
            self.creates[marker] = ("answered" if status == 201 else
                                    "refused" if answered else "unanswered")
            if status == 201:
                body = resp.json()
                self.writes[body["id"]] = checker.Write(version=body["version"])
                self.live.append(body["id"])
        elif op == "update":
            w = self.writes[pid]
            if status == 200:
                w.version = max(w.version, resp.json()["version"])
                w.updates += 1
            elif not answered:
                w.unanswered += 1
        elif status == 204 or not answered:  # an unanswered delete: never touched again
            self.writes[pid].deleted = status == 204
            self.writes[pid].delete_unanswered = status != 204
            self.live.remove(pid)

    def run(self) -> None:
        session = self.stack.admin_session()
        self.started = time.monotonic()
        next_at = self.started
        while not self.stop_event.is_set():
            self._one(session)
            next_at += 1 / self.rate
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))
        self.ended = time.monotonic()

    @property
    def answered_2xx(self) -> int:
        return sum(n for key, n in self.statuses.items() if key.split()[-1].startswith("2"))

    @property
    def http_5xx(self) -> int:
        return sum(n for key, n in self.statuses.items() if key.split()[-1].startswith("5"))

    @property
    def failed(self) -> int:
        """Answers that are neither a 2xx nor a 5xx: errors of the driver's own (a 404 for a
        product it saw created, a connection refused): each is a finding too."""
        return sum(n for key, n in self.statuses.items()
                   if not key.split()[-1].startswith(("2", "5")))


# --- the nemesis ----------------------------------------------------------------------------

@dataclass
class Happened:
    """What a planned fault did: when it really started (after the previous fault on its
    resource had healed) and healed, in seconds from the start."""

    kind: str
    planned_at: float
    started: float | None = None
    healed: float | None = None
    detail: str = ""
    error: str = ""


@dataclass
class Nemesis:
    stack: Stack
    node: private_rabbit.PrivateNode
    plan: list[Planned]
    t0: float = 0.0
    timeline: list[Happened] = field(default_factory=list)
    poison: dict[int, checker.Poison] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # the schedule keeps faults on one resource apart by their planned durations; a heal can
    # take longer (a broker's start_app, a worker getting ready), so each fault also waits for
    # the one before it on its resource to have healed: they never overlap, and the timeline
    # shows the real start and heal
    resources: dict[str, threading.Lock] = field(
        default_factory=lambda: {k.resource: threading.Lock() for k in KINDS})

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    def run(self, stop: threading.Event) -> None:
        self.t0 = time.monotonic()
        for planned in self.plan:
            if stop.wait(max(0.0, self.t0 + planned.at - time.monotonic())):
                break
            happened = Happened(kind=planned.kind, planned_at=planned.at)
            self.timeline.append(happened)
            thread = threading.Thread(target=self._fault, args=(planned, happened),
                                      name=f"fault-{planned.kind}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def wait_healed(self, timeout: float = 300) -> None:
        for thread in self.threads:
            thread.join(max(1.0, timeout))

    def last_heal(self) -> float:
        return max([h.healed or h.started or 0.0 for h in self.timeline] or [0.0])

    def _fault(self, planned: Planned, happened: Happened) -> None:
        rnd = random.Random(planned.param)
        resource = next(k.resource for k in KINDS if k.name == planned.kind)
        with self.resources[resource]:
            happened.started = self.now()
            try:
                getattr(self, FAULTS[planned.kind])(planned, happened, rnd)
            except Exception as exc:  # noqa: BLE001 - one that failed is in the verdict
                happened.error = f"{type(exc).__name__}: {exc}"[:300]
            finally:
                happened.healed = self.now()

    # each fault injects, waits its duration, heals (always)
    def broker_stopped(self, p, h, rnd):
        self.node.ctl("stop_app", timeout=120)
        try:
            time.sleep(p.duration)
        finally:
            self.node.ctl("start_app", timeout=120)
            self.node.ctl("await_startup", timeout=120)

    def connections_closed(self, p, h, rnd):
        # --global: without it rabbitmqctl closes only the connections of vhost "/", and the
        # stack runs on a vhost of its own (the node is the chaos run's own)
        self.node.ctl("close_all_connections", "--global", "chaos", timeout=60)

    def memory_alarm(self, p, h, rnd):
        self.node.ctl("set_vm_memory_high_watermark", "0")
        try:
            time.sleep(p.duration)
        finally:
            self.node.ctl("set_vm_memory_high_watermark", "0.4")

    def _pool_child(self, name, app, h, rnd):
        def children():
            main = processes.celery_worker_main(self.stack.proc(name).pid, app=app)
            return [pid for pid, ppid, _ in processes.descendants(main) if ppid == main] \
                if main else []

        # a pool replaces a killed child within a second or two; none for 30 s is a finding
        found = wait_until(children, timeout=30, interval=0.2,
                           message=f"a pool child of the {name} worker to kill")
        victim = rnd.choice(found)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        h.detail = f"pid {victim}"

    def catalog_frozen(self, p, h, rnd):
        """The whole worker process stopped (a VM pause, a stuck process): its messages stay
        unacked in its hands, then it goes on where it was."""
        main = wait_until(lambda: processes.celery_worker_main(self.stack.proc("worker").pid,
                                                               app="workers.catalog"),
                          timeout=30, interval=0.2, message="the catalog worker to freeze")
        os.kill(main, signal.SIGSTOP)
        try:
            time.sleep(p.duration)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(main, signal.SIGCONT)
        h.detail = f"pid {main} for {p.duration:.1f}s"

    def audit_pool_child(self, p, h, rnd):
        self._pool_child("audit", "workers.audit", h, rnd)

    def _restart(self, name, p, h):
        self.stack.kill(name)
        try:
            time.sleep(p.duration)
        finally:
            with self.lock:
                proc = self.stack.start(name)
            if name in ("worker", "audit"):
                wait_until(lambda: " ready." in proc.log() or not proc.alive(), timeout=90,
                           message=f"{name} ready again")

    def catalog_worker(self, p, h, rnd):
        self._restart("worker", p, h)

    def audit_worker(self, p, h, rnd):
        self._restart("audit", p, h)

    def relay(self, p, h, rnd):
        self._restart("relay", p, h)

    def catalog_db_unavailable(self, p, h, rnd):
        db = self.stack.env["CATALOG_DATABASE_URL"].rsplit("/", 1)[1]
        pg.connections_block(db)
        try:
            pg.connections_terminate(db)
            time.sleep(p.duration)
        finally:
            pg.connections_allow(db)

    def catalog_db_read_only(self, p, h, rnd):
        db = self.stack.env["CATALOG_DATABASE_URL"].rsplit("/", 1)[1]
        pg.execute(f'ALTER DATABASE "{db}" SET default_transaction_read_only = on')
        try:
            pg.connections_terminate(db)  # new sessions get it
            time.sleep(p.duration)
        finally:
            pg.execute(f'ALTER DATABASE "{db}" RESET default_transaction_read_only')
            pg.connections_terminate(db)

    def catalog_table_locked(self, p, h, rnd):
        holder = psycopg2.connect(self.stack.env["CATALOG_DATABASE_URL"], connect_timeout=5)
        try:
            with holder.cursor() as cur:
                cur.execute("SET statement_timeout = 0")
                cur.execute("LOCK TABLE catalog_product IN EXCLUSIVE MODE")  # reads go on
                time.sleep(p.duration)
        finally:
            holder.close()  # rolls back: unlocked

    def connections_terminated(self, p, h, rnd):
        which = rnd.choice(["admin", "catalog", "both"])
        for side in (["admin", "catalog"] if which == "both" else [which]):
            pg.connections_terminate(self.stack.env[f"{side.upper()}_DATABASE_URL"]
                                     .rsplit("/", 1)[1])
        h.detail = which

    def _publish(self, messages: list[tuple[bytes, dict]], within: float = 40.0) -> list[str]:
        """Publish with confirms, as a client that wants them delivered would: what is not
        confirmed is sent again (the broker may be stopped or blocked by another fault) until
        ``within`` seconds have passed. Each outcome is "confirmed", "failed" (never reached the
        broker) or "unknown" (sent, no confirm: it may still arrive, maybe more than once)."""
        outcomes = ["failed"] * len(messages)
        prepared = []
        for body, extra in messages:
            extra = dict(extra)
            task = extra.pop("task", contract.TASK_APPLY_PRODUCT_EVENTS)
            tid = str(uuid.uuid4())
            headers = {"lang": "py", "task": task, "id": tid, "root_id": tid,
                       "retries": 0} if task else {}
            props = {"content_type": "application/json", "content_encoding": "utf-8"} | extra
            prepared.append((body, headers, props))
        deadline = time.monotonic() + within
        while any(o != "confirmed" for o in outcomes) and time.monotonic() < deadline:
            try:
                conn = Connection(self.stack.env["CELERY_BROKER_URL"], connect_timeout=3,
                                  transport_options={"confirm_publish": True, "read_timeout": 3,
                                                     "write_timeout": 3})
                conn.ensure_connection(max_retries=0)
            except Exception:  # noqa: BLE001 - broker down: try again shortly
                time.sleep(1)
                continue
            with contextlib.closing(conn):
                producer = conn.Producer()
                for i, (body, headers, props) in enumerate(prepared):
                    if outcomes[i] == "confirmed":
                        continue
                    outcomes[i] = "unknown"
                    try:
                        producer.publish(body, exchange=PRODUCTS, routing_key="product.updated",
                                         headers=headers, delivery_mode=2, mandatory=True,
                                         retry=False, timeout=3, **props)
                        outcomes[i] = "confirmed"
                    except Exception:  # noqa: BLE001 - stays unknown; a new connection, later
                        break
            if any(o != "confirmed" for o in outcomes):
                time.sleep(1)
        return outcomes

    def duplicates(self, p, h, rnd):
        rows = [r[0] for r in self.stack.sql(
            "admin", "SELECT payload FROM products_outboxevent WHERE sent_at IS NOT NULL "
                     "ORDER BY id DESC LIMIT 400")]
        events = rnd.sample(rows, min(len(rows), rnd.randint(10, 80)))
        deliveries = [e for e in events for _ in range(rnd.randint(1, 3))]
        rnd.shuffle(deliveries)
        messages = []
        while deliveries:
            head = deliveries.pop()
            batch = [head] + [e for e in deliveries[:rnd.randint(0, 8)]
                              if e["type"] == head["type"]]
            for e in batch[1:]:
                deliveries.remove(e)
            messages.append((task_body(batch), {}))
        outcomes = self._publish(messages)
        h.detail = (f"{len(events)} old events as {len(messages)} messages, "
                    f"{outcomes.count('confirmed')} confirmed")

    def poison_injected(self, p, h, rnd):
        numbers = list(range(len(self.poison), len(self.poison) + rnd.randint(1, 4)))
        messages = [poison_message(n, rnd) for n in numbers]
        for n, (_, body, _, event) in zip(numbers, messages, strict=True):
            self.poison[n] = checker.Poison("failed", body, event)
        labels = [label for label, _, _, _ in messages]
        outcomes = self._publish([(body, extra) for _, body, extra, _ in messages])
        for n, outcome in zip(numbers, outcomes, strict=True):
            self.poison[n].outcome = outcome
        h.detail = ", ".join(f"#{n} {label}: {o}" for n, label, o
                             in zip(numbers, labels, outcomes, strict=True))


FAULTS = {
    "broker stopped": "broker_stopped",
    "broker connections closed": "connections_closed",
    "broker memory alarm": "memory_alarm",
    "catalog worker frozen (SIGSTOP)": "catalog_frozen",
    "catalog worker SIGKILLed": "catalog_worker",
    "audit worker pool child SIGKILLed": "audit_pool_child",
    "audit worker SIGKILLed": "audit_worker",
    "relay SIGKILLed": "relay",
    "catalog database unavailable": "catalog_db_unavailable",
    "catalog database read-only": "catalog_db_read_only",
    "catalog table locked": "catalog_table_locked",
    "database connections terminated": "connections_terminated",
    "duplicates and reordering injected": "duplicates",
    "poison injected": "poison_injected",
}
assert set(FAULTS) == {k.name for k in KINDS}


def task_body(events) -> bytes:
    return json.dumps([[], {"events": events}, {"callbacks": None, "errbacks": None,
                                                "chain": None, "chord": None}]).encode()


def poison_message(n: int, rnd: random.Random) -> tuple[str, bytes, dict, dict | None]:
    """One poison message of a random kind: (label, body, publish options, the poison event
    when the message itself is a well-formed task that a worker parks the event of alone).
    The checker knows each by its exact body or event (harness/checker.Poison). Its event names
    a product id the admin never has: if it were ever applied the checker would find a stranger
    in the catalog."""
    mark = f"chaos-poison-{n}"
    event = json.loads(json.dumps(valid_event(10**12 + n)))  # as a worker decodes it
    event["data"]["description"] = mark
    kinds = {
        "invalid envelope": lambda e: e["data"].pop("title"),
        "unknown event type": lambda e: e.update(type="product.exploded"),
        "bad field": lambda e: e["data"].update(price="free"),
    }
    label = rnd.choice([*kinds, "undecodable body", "wrong content type", "pickle",
                        "unknown task", "bad kwargs", "not a task message"])
    if label in kinds:
        kinds[label](event)
        return label, task_body([event]), {}, event
    return label, *{
        "undecodable body": (b'[[], {"events": ["' + mark.encode() + b'"', {}),
        "wrong content type": (task_body([event]), {"content_type": "text/plain"}),
        "pickle": (pickle.dumps([[], {"events": [mark]}, {}]),
                   {"content_type": "application/x-python-serialize"}),
        "unknown task": (task_body([event]), {"task": "catalog.nope"}),
        "bad kwargs": (json.dumps([[], {"events": mark}, {}]).encode(), {}),
        "not a task message": (task_body([event]), {"task": None}),
    }[label], None


# --- a run ----------------------------------------------------------------------------------

def heal_all(stack: Stack, node: private_rabbit.PrivateNode) -> None:
    """Whatever a fault left behind (they heal themselves; this is the belt to their braces)."""
    node.ctl("start_app", timeout=120, check=False)
    node.ctl("set_vm_memory_high_watermark", "0.4", check=False)
    node.ctl("await_startup", timeout=120)
    db = stack.env["CATALOG_DATABASE_URL"].rsplit("/", 1)[1]
    pg.connections_allow(db)
    pg.execute(f'ALTER DATABASE "{db}" RESET default_transaction_read_only')
    for name in ("relay", "worker", "audit"):
        if not stack.proc(name).alive():
            stack.start(name)


def run(*, seconds: float, seed: int, rate: float = 10.0, out=print) -> dict:
    plan = schedule(seed, seconds)
    out(f"chaos: seed {seed}, {seconds:.0f} s, {rate:g} HTTP writes/s, {len(plan)} faults "
        f"planned (repeat with --seed {seed})")
    with private_rabbit.node("chaos") as node, running_stack(
            "chaos", start=("admin", "catalog", "relay", "worker", "audit"), broker=node,
            overrides=OVERRIDES) as stack:
        load = Load(stack, rate=rate, seed=seed)
        nemesis = Nemesis(stack=stack, node=node, plan=plan)
        stop = threading.Event()
        load.start()
        try:
            nemesis.run(stop)
            wait_until(lambda: time.monotonic() - nemesis.t0 >= seconds, timeout=seconds + 5,
                       interval=0.2, message="the end of the run")
            nemesis.wait_healed()
            heal_all(stack, node)
        finally:
            stop.set()
            load.stop_event.set()
            load.join(30)
        last_heal = nemesis.now()
        healed_at = time.monotonic()

        def converged():
            verdict = checker.judge(checker.collect(stack), writes=load.writes,
                                    creates=load.creates, poison=nemesis.poison)
            return verdict if verdict.converged else None

        try:
            wait_until(converged, timeout=2 * CONVERGE_WITHIN, interval=1.0,
                       message="convergence")
            converge_seconds = round(time.monotonic() - healed_at, 1)
        except AssertionError:
            converge_seconds = None
        verdict = checker.judge(checker.collect(stack), writes=load.writes,
                                creates=load.creates, poison=nemesis.poison,
                                http_5xx=load.http_5xx)
        reasons = list(verdict.reasons)
        achieved = load.sent / max(0.001, load.ended - load.started)
        reasons += run_problems(nemesis.timeline, load, seconds=seconds, rate=rate,
                                achieved=achieved)
        if converge_seconds is None or converge_seconds > CONVERGE_WITHIN:
            reasons.append(f"not converged within {CONVERGE_WITHIN:.0f} s of the last heal "
                           f"({converge_seconds if converge_seconds is not None else 'never'})")
        if load.failed:
            reasons.append(f"{load.failed} HTTP writes failed without a 5xx: "
                           f"{load.errors[:5]}")
        reasons += pause_problems(stack)
        report = {
            "seed": seed, "seconds": seconds, "rate": rate, "achieved_rate": round(achieved, 1),
            "ok": not reasons, "reasons": reasons, "converge_seconds": converge_seconds,
            "last_heal_at": last_heal, "http": load.statuses, "http_errors": load.errors[:20],
            "faults": [asdict(h) for h in nemesis.timeline],
            "poison": {n: p.outcome for n, p in nemesis.poison.items()},
            "answered_2xx": load.answered_2xx, "checker": verdict.as_dict(),
            "worker_restarts": {n: len(stack.procs.get(n, [])) - 1
                                for n in ("worker", "audit", "relay")},
        }
        out(render(report))
        return report


def pause_problems(stack: Stack) -> list[str]:
    """After convergence no worker may still say it is paused: its gauge (the alert an operator
    has) and its health check (what compose restarts by) must both be back."""
    problems = []
    for name, var, prefix in (("worker", "CATALOG_WORKER_METRICS_BIND", "catalog"),
                              ("audit", "AUDIT_WORKER_METRICS_BIND", "audit")):
        try:
            text = requests.get(f"http://{stack.env[var]}/metrics", timeout=10).text
        except requests.RequestException as exc:
            problems.append(f"the {name} worker's metrics unreadable: {exc}")
            continue
        paused = [line for line in text.splitlines()
                  if line.startswith(f"{prefix}_paused{{") and not line.endswith(" 0.0")]
        if paused:
            problems.append(f"the {name} worker still says it is paused: {paused}")
        check = subprocess.run([sys.executable, "-m", "workers.healthcheck", prefix],
                               env=stack.env, cwd=processes.REPO, capture_output=True,
                               text=True, timeout=60)
        if "paused" in check.stdout:
            problems.append(f"the {name} worker's health check says paused: {check.stdout}")
    return problems


def run_problems(timeline: list[Happened], load: Load, *, seconds: float, rate: float,
                 achieved: float) -> list[str]:
    """What makes a run prove nothing even when the end state is right: a fault that did not
    happen, a load that did not run (a run with no write acknowledged would pass any check)."""
    problems = []
    failed = [h for h in timeline if h.error]
    if failed:
        problems.append(f"{len(failed)} fault(s) could not be injected: " + "; ".join(
            f"{h.kind} at {h.started} s: {h.error}" for h in failed[:5]))
    if achieved < 0.8 * rate:
        problems.append(f"the load reached {achieved:.1f} writes/s of the {rate:g}/s asked")
    if load.answered_2xx < 0.5 * rate * seconds:
        problems.append(f"only {load.answered_2xx} writes acknowledged (at least "
                        f"{0.5 * rate * seconds:.0f} expected in {seconds:g} s)")
    missing = {"create", "update", "delete"} - {
        key.split()[0] for key in load.statuses if key.split()[-1].startswith("2")}
    if missing:
        problems.append(f"no {', '.join(sorted(missing))} acknowledged")
    return problems


def render(report: dict) -> str:
    lines = ["", "fault timeline (seconds from the start):",
             f"{'start':>6} {'healed':>7}  fault"]
    for f in report["faults"]:
        extra = f" ({f['detail']})" if f["detail"] else ""
        if f["started"] is not None and f["started"] - f["planned_at"] >= 1:
            extra += f" [planned at {f['planned_at']} s: waited for its resource]"
        err = f"  ERROR {f['error']}" if f["error"] else ""
        start, healed = (str(f[k]) if f[k] is not None else "-" for k in ("started", "healed"))
        lines.append(f"{start:>6} {healed:>7}  {f['kind']}{extra}{err}")
    c = report["checker"]
    by_outcome = {o: sum(1 for v in report["poison"].values() if v == o)
                  for o in ("confirmed", "unknown", "failed")}
    lines += [
        "",
        f"HTTP writes: {sum(report['http'].values())} sent at {report['achieved_rate']}/s "
        f"(asked {report['rate']:g}/s): " + ", ".join(
            f"{k} x{v}" for k, v in sorted(report["http"].items())),
        f"products: {c['products']}, products with acknowledged writes checked: "
        f"{c['acknowledged_writes']}, writes acknowledged {report['answered_2xx']}",
        f"catalog: lost {len(c['lost'])}, stale {len(c['stale'])}, resurrected "
        f"{len(c['resurrected'])}, ahead {len(c['ahead'])}, strangers {len(c['strangers'])}",
        f"admin: behind {len(c['admin_behind'])}, applied twice {len(c['applied_twice'])}, "
        f"deleted unasked {len(c['deleted_unasked'])}, created twice "
        f"{len(c['created_twice'])}, invented {len(c['invented'])}; HTTP 5xx {c['http_5xx']}",
        f"outbox pending {c['outbox_pending']}, set aside {c['set_aside']}; audit missing "
        f"{c['audit_missing']}, audit rows for unknown events {c['audit_strangers']}",
        f"poison injected: {by_outcome['confirmed']} confirmed, {by_outcome['unknown']} "
        f"unknown outcome, {by_outcome['failed']} never reached the broker; parked: " + "; ".join(
            f"{name} {p['distinct_poison']} distinct in {p['messages']} messages, "
            f"{p['unmarked']} not poison" for name, p in c["parked"].items()),
        f"restarts by faults: {report['worker_restarts']}",
        f"converged {report['converge_seconds']} s after the last heal "
        f"(at {report['last_heal_at']} s; limit {CONVERGE_WITHIN:.0f} s)",
        "verdict: " + ("OK" if report["ok"] else "FAILED: " + "; ".join(report["reasons"])),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("CHAOS_SECONDS") or 600))
    parser.add_argument("--seed", type=int, default=None,
                        help="repeat a run's schedule (default: a new random seed)")
    parser.add_argument("--rate", type=float, default=10.0, help="HTTP writes per second")
    parser.add_argument("--json", type=Path, default=processes.ARTIFACTS / "chaos.json")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**9)
    try:
        report = run(seconds=args.seconds, seed=seed, rate=args.rate)
    except Exception:  # noqa: BLE001 - the harness itself failed: say so, non-zero
        traceback.print_exc()
        print(f"chaos: the run itself failed (seed {seed})", file=sys.stderr)
        return 2
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"report: {args.json}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
