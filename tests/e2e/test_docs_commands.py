"""Commands of the operator's manual that no other test runs, run as the docs write them
(outside finding 14): the broker's read-only commands of docs/operations.md against the local
RabbitMQ, the restore's drain check (step 2) over a subscriber's queue and its delay queues,
and the README's way to take the Node.js demo's product back out of the catalog."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import uuid

import pytest
import requests
from kombu import Connection, Queue

from harness import processes, vhosts
from harness.stack import running_stack, wait_converged
from harness.waiting import wait_until

REPO = processes.REPO
OPERATIONS = (REPO / "docs" / "operations.md").read_text()
README = (REPO / "README.md").read_text()
NOT_RUN = {  # command -> why no test runs it (docs/operations.md says so too)
    "rabbitmqctl import_definitions": "it rewrites the broker's users and permissions, and the "
                                      "tests share one broker",
}


def inline_broker_commands() -> list[str]:
    return sorted(set(re.findall(r"`((?:rabbitmqctl|rabbitmq-diagnostics) [^`]+)`",
                                 OPERATIONS)))


def test_every_read_only_broker_command_of_operations_md_runs(tmp_path):
    commands = inline_broker_commands()
    assert any("export_definitions" in c for c in commands), commands
    ran = []
    for command in commands:
        if any(command.startswith(skipped) for skipped in NOT_RUN):
            assert "import_definitions" in OPERATIONS and "not: it rewrites" in OPERATIONS
            continue
        words = shlex.split(command)
        name = next(w for w in words[1:] if not w.startswith("-"))
        if name == "export_definitions" and words[-1] == "export_definitions":
            continue  # the name of the command in a sentence; the full line is below
        if name == "export_definitions":
            command = command.replace("/var/backups/rabbitmq-definitions.json",
                                      shlex.quote(str(tmp_path / "definitions.json")))
        out = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, (command, out.stdout + out.stderr)
        ran.append(name)
        if name == "export_definitions":
            import json

            exported = json.loads((tmp_path / "definitions.json").read_text())
            assert {"vhosts", "users", "queues", "exchanges"} <= set(exported), exported.keys()
        if name == "alarms":
            assert "alarm" in out.stdout, out.stdout
        if name == "memory_breakdown":
            assert re.search(r"\b(code|binary|queue_procs)\b", out.stdout), out.stdout
    assert {"export_definitions", "alarms", "memory_breakdown", "list_bindings"} <= set(ran)


def restore_drain_check() -> str:
    section = OPERATIONS[OPERATIONS.index("### Restoring the admin database"):]
    block = section[section.index("```sh"):]
    block = block[:block.index("```\n", 5)]
    lines = [line for line in block.splitlines() if line.startswith("rabbitmqctl")]
    assert len(lines) == 1, lines
    assert "[-p vhost]" in lines[0], lines[0]
    return lines[0]


def test_the_restore_drain_check_counts_retries_waiting_in_the_delay_queues():
    """Restore step 2 waits until no subscriber holds messages: ready or unacknowledged in its
    queue, or waiting for a retry in its delay queues (the old check, `list_queues ... messages`
    read for catalog.products, passed with retries still to come back)."""
    vhost = f"drain-{uuid.uuid4().hex[:8]}"
    url = vhosts.vhost_create(vhost)
    command = restore_drain_check().replace("[-p vhost]", f"-p {shlex.quote(vhost)}")

    def holding() -> list[str]:
        out = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]

    try:
        with Connection(url, connect_timeout=5,
                        transport_options={"confirm_publish": True}) as conn:
            for name, messages in (("catalog.products", 0), ("catalog_celery_delayed_3", 1),
                                   ("audit.products", 0), ("audit.products.dlq", 2),
                                   ("celeryev.flower-1", 3)):
                Queue(name, durable=True)(conn.default_channel).declare()
                for _ in range(messages):
                    conn.Producer().publish(b"x", exchange="", routing_key=name, retry=False)
        # only the retry waiting in the catalog's delay queue (the DLQ is the next step's,
        # Flower's event queue none of the subscribers')
        wait_until(lambda: holding() == ["catalog_celery_delayed_3"], timeout=30,
                   message=lambda: f"the delayed retry shown: {holding()}")
        with Connection(url, connect_timeout=5) as conn:
            conn.default_channel.queue_purge("catalog_celery_delayed_3")
        wait_until(lambda: holding() == [], timeout=30,
                   message=lambda: f"drained: {holding()}")
    finally:
        vhosts.vhost_delete(vhost)


@pytest.mark.broker
def test_the_node_demo_product_is_taken_back_out_as_the_readme_says():
    node = shutil.which("node")
    assert node, "the Node.js demo needs `node` (Node 20) on PATH"
    produce = next(line for line in README.splitlines()
                   if line.startswith("node clients/node/producer.js --id 9001"))
    take_out = re.search(r"to take it\s+back out, with everything running:\s+`([^`]+)`",
                         README).group(1)
    assert take_out == "python admin_project/manage.py restore_fence", take_out
    with running_stack("nodedemo") as st:
        env = dict(st.env)
        sent = subprocess.run(["bash", "-c", produce], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "confirmed product.created id=9001 version=1" in sent.stdout, sent.stdout

        def in_catalog() -> int:
            return requests.get(f"{st.catalog}/api/products/9001/", timeout=5).status_code

        wait_until(lambda: in_catalog() == 200, timeout=30, message="9001 in the catalog")
        drift = st.reconcile()
        assert drift.returncode == 1 and "unknown" in drift.stdout, drift.stdout
        assert re.search(r"unknown\s+1 .*\b9001\b", drift.stdout), drift.stdout

        fence = subprocess.run(["bash", "-c", take_out], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120)
        assert fence.returncode == 0, fence.stdout + fence.stderr
        assert "record as deleted: 1 (9001)" in fence.stdout, fence.stdout
        wait_converged(st, timeout=60)  # reconcile exits 0
        assert in_catalog() == 404
        made = st.admin_session().post(f"{st.admin}/api/products/",
                                       json={"title": "mine", "price": "1.00"}, timeout=10)
        assert made.status_code == 201 and made.json()["id"] > 9001, made.text
