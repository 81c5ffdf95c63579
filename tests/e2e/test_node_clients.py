"""The Node.js producer and consumer (clients/node/) against this session's whole system: Node's
own test runner (`node --test`) runs clients/node/test/, with the e2e stack's URLs and account."""

from __future__ import annotations

import os
import shutil
import subprocess

from harness import processes

NODE_DIR = processes.REPO / "clients" / "node"


def test_node_clients_speak_the_documented_contract(stack):
    node = shutil.which("node")
    assert node, "the Node.js clients' tests need `node` (Node 20) on PATH"
    assert (NODE_DIR / "node_modules" / "amqplib").is_dir(), (
        "clients/node/node_modules is missing: `make test` runs `npm ci` there")
    env = dict(os.environ, ADMIN_URL=stack.admin, CATALOG_URL=stack.catalog,
               AMQP_URL=stack.env["CELERY_BROKER_URL"], ADMIN_USERNAME=stack.username,
               ADMIN_PASSWORD=stack.password)
    tests = sorted(str(p.relative_to(NODE_DIR)) for p in (NODE_DIR / "test").glob("*.test.js"))
    assert len(tests) >= 3, tests
    r = subprocess.run([node, "--test", "--test-reporter=spec", *tests], cwd=NODE_DIR, env=env,
                       capture_output=True, text=True, timeout=600)
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-4000:]
    assert "ℹ fail 0" in r.stdout and "ℹ pass 0" not in r.stdout, r.stdout[-3000:]
