"""Least-privilege RabbitMQ users, defined once, applied either through the management HTTP API
(compose: `python scripts/broker_users.py --http http://rabbitmq:15672`) or through rabbitmqctl
on this machine (`--rabbitmqctl`, used by the tests that prove these permissions suffice).

Users and passwords come from the environment:
  ADMIN_BROKER_USER / ADMIN_BROKER_PASSWORD      relay: declare + publish to `products` only
  CATALOG_BROKER_USER / CATALOG_BROKER_PASSWORD  catalog worker: its own queues and exchanges
  AUDIT_BROKER_USER / AUDIT_BROKER_PASSWORD      audit worker: its own queues and exchanges
  <NAME>_BROKER_USER / <NAME>_BROKER_PASSWORD    every other subscriber of
                                                 catalog_project/topology.py: the same, its own
  FLOWER_BROKER_USER / FLOWER_BROKER_PASSWORD    Flower: events and remote-control only
The management user (RABBITMQ_ADMIN_USER / RABBITMQ_ADMIN_PASSWORD) is used only to create them
and to declare the shared exchanges (`products`, `celeryev`), which no application user may
configure (with --rabbitmqctl: as BROKER_OWNER_URL, default guest on the vhost).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kombu import Connection  # noqa: E402

from catalog_project.topology import SUBSCRIBERS  # noqa: E402
from product_events.broker import SHARED_EXCHANGES, shared_exchanges_declare  # noqa: E402


# (configure, write, read) regexes per role. What each role needs, and nothing more:
# * the shared exchanges `products` (the bus) and `celeryev` (task events, for Flower) are
#   configured by nobody but their owner (this script declares them: product_events/broker.py);
#   the relay may publish to `products`, the subscribers may bind to it and publish events;
# * a subscriber <s> owns `<s>`, `<s>.*` (its queues, DLQ, dead-letter exchange, remote
#   control `<s>.pidbox`), `<s>_celery_delayed_*` (its retries waiting), `reply.<s>.pidbox`
#   and its workers' `<node>.<s>.pidbox` control queues; nothing of another subscriber's;
# * Flower reads events through its own `celeryev.<uuid>` queues and controls the catalog's
#   workers (`catalog.pidbox`, replies on `reply.catalog.pidbox`); it reads no product queue.
def _subscriber(name: str) -> tuple[str, str, str]:
    own = (rf"{name}|{name}\..*|{name}_celery_delayed_.*|reply\.{name}\.pidbox"
           rf"|.*\.{name}\.pidbox")
    return (rf"^({own})$", rf"^({own}|celeryev)$", rf"^({own}|products)$")


_FLOWER_OWN = r"celeryev\..*|.*\.reply\.catalog\.pidbox"
PERMISSIONS = {
    "ADMIN": (r"^$", r"^products$", r"^$"),
    # one role per subscriber of catalog_project/topology.py: CATALOG, AUDIT, and any added
    **{name.upper(): _subscriber(name) for name in SUBSCRIBERS},
    "FLOWER": (rf"^({_FLOWER_OWN}|catalog\.pidbox|reply\.catalog\.pidbox)$",
               rf"^({_FLOWER_OWN}|catalog\.pidbox|reply\.catalog\.pidbox)$",
               rf"^({_FLOWER_OWN}|celeryev|reply\.catalog\.pidbox)$"),
}


def users_from_env() -> list[tuple[str, str, tuple[str, str, str]]]:
    out = []
    for role, perms in PERMISSIONS.items():
        user = os.environ.get(f"{role}_BROKER_USER")
        password = os.environ.get(f"{role}_BROKER_PASSWORD")
        if not user or not password:
            sys.exit(f"set {role}_BROKER_USER and {role}_BROKER_PASSWORD")
        out.append((user, password, perms))
    return out


def apply_http(base: str, vhost: str) -> None:
    admin = os.environ.get("RABBITMQ_ADMIN_USER", "admin")
    secret = os.environ["RABBITMQ_ADMIN_PASSWORD"]
    auth = base64.b64encode(f"{admin}:{secret}".encode()).decode()
    v = urllib.parse.quote(vhost, safe="")

    def put(path: str, body: dict) -> None:
        req = urllib.request.Request(f"{base}/api/{path}", method="PUT",
                                     data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Basic {auth}",
                                              "Content-Type": "application/json"})
        for attempt in range(30):  # the management plugin starts a little after the node
            try:
                urllib.request.urlopen(req, timeout=10).close()
                return
            except (urllib.error.URLError, ConnectionError) as exc:
                if isinstance(exc, urllib.error.HTTPError) and exc.code < 500:
                    raise
                time.sleep(min(2, 0.2 * (attempt + 1)))
        raise SystemExit(f"management API at {base} did not answer")

    put(f"vhosts/{v}", {})
    for exchange in SHARED_EXCHANGES:  # the owner declares the shared exchanges
        put(f"exchanges/{v}/{urllib.parse.quote(exchange.name)}",
            {"type": exchange.type, "durable": exchange.durable})
    for user, password, (conf, write, read) in users_from_env():
        put(f"users/{urllib.parse.quote(user)}", {"password": password, "tags": ""})
        put(f"permissions/{v}/{urllib.parse.quote(user)}",
            {"configure": conf, "write": write, "read": read})
        print(f"broker user {user!r}: configure={conf} write={write} read={read}")


def apply_rabbitmqctl(vhost: str) -> None:
    def ctl(*args: str, check: bool = True) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=check, capture_output=True, timeout=60)

    for user, password, (conf, write, read) in users_from_env():
        ctl("delete_user", user, check=False)
        ctl("add_user", user, password)
        ctl("set_permissions", "-p", vhost, user, conf, write, read)
        print(f"broker user {user!r} on vhost {vhost!r}")
    # the owner declares the shared exchanges, as a user that may configure them
    owner = os.environ.get("BROKER_OWNER_URL") or (
        f"amqp://guest:guest@127.0.0.1:5672/{urllib.parse.quote(vhost, safe='')}")
    with Connection(owner, connect_timeout=10) as conn:
        shared_exchanges_declare(conn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--http", metavar="URL", help="management API base URL")
    group.add_argument("--rabbitmqctl", action="store_true", help="use rabbitmqctl locally")
    parser.add_argument("--vhost", default=os.environ.get("RABBITMQ_VHOST", "/"))
    args = parser.parse_args()
    if args.http:
        apply_http(args.http.rstrip("/"), args.vhost)
    else:
        apply_rabbitmqctl(args.vhost)


if __name__ == "__main__":
    main()
