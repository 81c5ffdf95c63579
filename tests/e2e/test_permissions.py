"""The broker permission matrix: every user `scripts/broker_users.py` creates, against every
operation on every entity of the topology, on the real broker. Allowed where the role needs it
(written out below, by role, not derived from the regexes under test), refused otherwise."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import uuid

import amqp
from amqp.exceptions import AccessRefused, NotFound
from kombu import Connection, Exchange, Queue

from catalog_project.topology import SUBSCRIBERS
from harness import processes
from harness.vhosts import vhost_create, vhost_delete
from product_events.broker import shared_exchanges_declare

ROLES = ("ADMIN", "CATALOG", "AUDIT", "FLOWER")
NODE = "node@host"  # a worker's remote-control queue is `<node>.<subscriber>.pidbox`


def exchanges() -> dict[str, str]:
    """{name: type} of every exchange in the topology."""
    out = {"products": "topic", "celeryev": "topic"}
    for s in SUBSCRIBERS:
        out |= {s: "topic", f"{s}.dlx": "direct", f"{s}_celery_delayed_27": "topic",
                f"{s}_celery_delayed_3": "topic", f"{s}_celery_delayed_delivery": "topic",
                f"{s}.pidbox": "fanout", f"reply.{s}.pidbox": "direct"}
    return out


def queues() -> list[str]:
    out = ["celeryev.flower-matrix", "x.reply.catalog.pidbox"]  # Flower's event and reply queue
    for s in SUBSCRIBERS:
        out += [f"{s}.products", f"{s}.products.dlq", f"{s}_celery_delayed_3",
                f"{NODE}.{s}.pidbox"]
    return out


def own_of(subscriber: str) -> tuple[set[str], set[str]]:
    """(exchanges, queues) a subscriber owns."""
    return ({n for n in exchanges() if n.startswith((subscriber + ".", subscriber + "_"))
             or n in (subscriber, f"reply.{subscriber}.pidbox")},
            {q for q in queues() if q.startswith((subscriber + ".", subscriber + "_"))
             or q.endswith(f".{subscriber}.pidbox")})


def allowed(role: str) -> set[tuple[str, str]]:
    """Every (operation, entity) the role needs; everything else must be refused."""
    if role == "ADMIN":  # the relay: publish to the bus, nothing else
        return {("publish", "products")}
    if role == "FLOWER":  # events through its own queues; remote control of catalog workers
        mine = {"celeryev.flower-matrix", "x.reply.catalog.pidbox"}
        return ({(op, q) for q in mine for op in ("delete", "purge", "consume")}
                | {(op, e) for e in ("catalog.pidbox", "reply.catalog.pidbox")
                   for op in ("declare", "delete", "publish")}
                | {("bind", "celeryev"), ("bind", "reply.catalog.pidbox")})
    subscriber = role.lower()
    own_exchanges, own_queues = own_of(subscriber)
    # a worker's own `<node>.<s>.pidbox` pattern also matches Flower's `x.reply.catalog.pidbox`
    # reply queue for the catalog (it answers Flower there)
    if subscriber == "catalog":
        own_queues |= {"x.reply.catalog.pidbox"}
    return ({(op, e) for e in own_exchanges for op in ("declare", "delete", "publish", "bind")}
            | {(op, q) for q in own_queues for op in ("delete", "purge", "consume")}
            | {("bind", "products"), ("publish", "celeryev")})


def own_queue(role: str) -> str | None:
    return {"CATALOG": "catalog.products", "AUDIT": "audit.products",
            "FLOWER": "celeryev.flower-matrix"}.get(role)


def topology_declare(url: str) -> None:
    """The whole topology, as its owner and the workers declare it (as guest)."""
    with Connection(url) as conn:
        shared_exchanges_declare(conn)
        ch = conn.channel()
        for s in SUBSCRIBERS.values():
            s.declare(ch)
        for name, kind in exchanges().items():
            Exchange(name, kind, durable=True)(ch).declare()
        for name in queues():
            if not name.endswith(("products", ".dlq", "_celery_delayed_3")):
                Queue(name, durable=False, auto_delete=False)(ch).declare()


def attempt(conn, role: str, op: str, entity: str) -> bool:
    """Run one operation as this user; True if the broker allowed it, False if refused."""
    ch = conn.channel()
    try:
        if op == "declare":
            ch.exchange_declare(entity, exchanges()[entity], durable=True, auto_delete=False)
        elif op == "delete":
            if entity in exchanges():
                ch.exchange_delete(entity)
            else:
                ch.queue_delete(entity)
        elif op == "purge":
            ch.queue_purge(entity)
        elif op == "consume":
            ch.basic_get(entity, no_ack=False)
        elif op == "publish":
            ch.basic_publish(amqp.Message(b"{}"), exchange=entity, routing_key="matrix.none")
            ch.exchange_declare("amq.direct", "direct", passive=True)  # sync: surfaces a 403
        elif op == "bind":
            queue = own_queue(role)
            if queue is None:
                queue = "catalog.products"  # a user with no queue: any bind is refused
            ch.queue_bind(queue, entity, routing_key="matrix.bind")
            ch.queue_unbind(queue, entity, routing_key="matrix.bind")
        return True
    except AccessRefused:
        return False
    finally:
        with contextlib.suppress(Exception):
            ch.close()


def test_every_user_may_do_exactly_what_its_role_needs():
    vhost = f"perm-{uuid.uuid4().hex[:8]}"
    url = vhost_create(vhost)
    values, urls = {}, {}
    for role in ROLES:
        user, secret = f"perm-{role.lower()}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        values[f"{role}_BROKER_USER"], values[f"{role}_BROKER_PASSWORD"] = user, secret
        urls[role] = f"amqp://{user}:{secret}@127.0.0.1:5672/{vhost}"
    try:
        made = subprocess.run([sys.executable, "scripts/broker_users.py", "--rabbitmqctl",
                               "--vhost", vhost], cwd=processes.REPO,
                              env=processes.base_env(**values, BROKER_OWNER_URL=url),
                              capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stdout + made.stderr
        topology_declare(url)
        wrong = []
        ops = [(op, e) for op, e in itertools.product(("declare", "delete", "publish", "bind"),
                                                       exchanges())]
        ops += [(op, q) for op, q in itertools.product(("delete", "purge", "consume"), queues())]
        for role in ROLES:
            expected = allowed(role)
            with Connection(urls[role]) as conn:
                conn.connect()
                raw = conn.connection
                for op, entity in ops:
                    try:
                        got = attempt(raw, role, op, entity)
                    except NotFound:  # an entity another check deleted: put it back, again
                        topology_declare(url)
                        got = attempt(raw, role, op, entity)
                    if got != ((op, entity) in expected):
                        wrong.append(f"{role} {op} {entity}: "
                                     f"{'allowed' if got else 'refused'}")
                    if got and op == "delete":
                        topology_declare(url)  # put back what an allowed delete removed
        assert not wrong, "\n".join(wrong)
    finally:
        for role in ROLES:
            subprocess.run(["rabbitmqctl", "-q", "delete_user", values[f"{role}_BROKER_USER"]],
                           capture_output=True, timeout=60)
        vhost_delete(vhost)

