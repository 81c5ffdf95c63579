"""A test-owned RabbitMQ node, for faults that must never touch the shared broker (a memory or
disk alarm blocks every publisher of a node: other engineers' tests would hang).

    with private_rabbit.node() as node:       # or the ``private_rabbit`` pytest fixture
        node.url                              # amqp://guest:guest@127.0.0.1:<port>/
        with node.memory_alarm(): ...         # publishers blocked, always cleared

It runs ``/usr/lib/rabbitmq/bin/rabbitmq-server`` as the current user with its own node name,
ports, data, logs, config and ``HOME`` (cookie) in a temporary directory (docs/operations.md,
"During a broker alarm"; /work/shared/NOTES.md), and is stopped and removed afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from harness import processes
from harness.waiting import wait_until

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
DIAGNOSTICS = "/usr/lib/rabbitmq/bin/rabbitmq-diagnostics"


@dataclass
class PrivateNode:
    name: str
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def vhost_url(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{quote(vhost, safe='')}"

    def ctl(self, *args: str, timeout: float = 60, check: bool = True,
            tool: str = CTL) -> subprocess.CompletedProcess:
        return subprocess.run([tool, "-q", "-n", self.name, *args], env=self.env, check=check,
                              capture_output=True, text=True, timeout=timeout)

    def vhost_create(self, vhost: str) -> str:
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return self.vhost_url(vhost)

    def vhost_delete(self, vhost: str) -> None:
        self.ctl("delete_vhost", vhost, check=False)

    def alarms(self) -> str:
        return self.ctl("alarms", tool=DIAGNOSTICS, check=False).stdout.lower()

    @contextlib.contextmanager
    def memory_alarm(self):
        """``set_vm_memory_high_watermark 0`` on this node only: every connection that publishes
        is blocked until the block ends (the watermark is always restored)."""
        self.ctl("set_vm_memory_high_watermark", "0")
        try:
            wait_until(lambda: "memory" in self.alarms(), timeout=30, interval=0.2,
                       message="the private node's memory alarm")
            yield
        finally:
            self.ctl("set_vm_memory_high_watermark", "0.4")
            wait_until(lambda: "memory" not in self.alarms(), timeout=60, interval=0.2,
                       message="the private node's memory alarm to clear")

    def queue_depth(self, vhost_url: str, queue: str) -> int:
        from kombu import Connection

        with Connection(vhost_url, connect_timeout=5) as conn:
            return conn.default_channel.queue_declare(queue, passive=True)[1]


@contextlib.contextmanager
def node(prefix: str = "private"):
    """Start a private node (~10 s), yield it, stop it and delete its files."""
    base = Path(tempfile.mkdtemp(prefix=f"rabbit-{prefix}-"))
    name = f"{prefix}{uuid.uuid4().hex[:6]}@localhost"
    port, dist_port = processes.free_port(), processes.free_port()
    (base / "home").mkdir()
    cookie = base / "home" / ".erlang.cookie"
    cookie.write_text(uuid.uuid4().hex)
    cookie.chmod(0o400)
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"
        )
    (base / "enabled_plugins").write_text("[].\n")
    env = dict(os.environ, HOME=str(base / "home"), RABBITMQ_NODENAME=name,
               RABBITMQ_NODE_PORT=str(port), RABBITMQ_DIST_PORT=str(dist_port),
               RABBITMQ_MNESIA_BASE=str(base / "mnesia"), RABBITMQ_LOG_BASE=str(base / "log"),
               RABBITMQ_CONFIG_FILE=str(base / "rabbitmq"),
               RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
               RABBITMQ_PID_FILE=str(base / "node.pid"))
    rnode = PrivateNode(name=name, port=port, env=env)
    started = subprocess.run([SERVER, "-detached"], env=env, capture_output=True, text=True,
                             timeout=60)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        # -detached returns before the node answers: poll, then wait for the app to boot
        wait_until(lambda: rnode.ctl("ping", check=False).returncode == 0, timeout=60,
                   interval=0.3, message=lambda: f"private node {name} up: " + "".join(
                       p.read_text()[-2000:] for p in (base / "log").glob("*.log")))
        rnode.ctl("await_startup", timeout=120)
        yield rnode
    finally:
        rnode.ctl("stop", timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)
