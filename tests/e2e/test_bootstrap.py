"""scripts/bootstrap.py names what is wrong with the broker (outside finding 14: a missing
virtual host and a refused login were answered with "Start it with: rabbitmq-server -detached",
for a broker that was running). Each case fails before any database is touched."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from harness import processes, vhosts


def bootstrap(broker_url: str) -> subprocess.CompletedProcess:
    env = processes.base_env(CELERY_BROKER_URL=broker_url,
                             ADMIN_DATABASE_URL="postgres://postgres@127.0.0.1:1/never",
                             CATALOG_DATABASE_URL="postgres://postgres@127.0.0.1:1/never")
    return subprocess.run([sys.executable, "scripts/bootstrap.py"], cwd=processes.REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def vhost():
    name = f"boot-msg-{uuid.uuid4().hex[:8]}"
    vhosts.vhost_create(name)
    yield name
    vhosts.vhost_delete(name)


def test_a_missing_virtual_host_is_named_with_the_commands_that_create_it():
    name = f"missing-{uuid.uuid4().hex[:8]}"
    out = bootstrap(f"amqp://guest:guest@127.0.0.1:5672/{name}")
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"has no virtual host '{name}'" in out.stderr, out.stderr
    assert f"rabbitmqctl add_vhost {name}" in out.stderr
    assert f"rabbitmqctl set_permissions -p {name} guest" in out.stderr
    assert "rabbitmq-server -detached" not in out.stderr


def test_a_refused_login_is_named_as_one():
    out = bootstrap("amqp://guest:not-the-password@127.0.0.1:5672//")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "refused the login of user 'guest'" in out.stderr, out.stderr
    assert "rabbitmq-server -detached" not in out.stderr


def test_a_user_without_access_to_the_vhost_or_without_configure_is_told_so(vhost):
    user, secret = f"boot-msg-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    rabbitmqctl("add_user", user, secret)
    try:
        out = bootstrap(f"amqp://{user}:{secret}@127.0.0.1:5672/{vhost}")
        assert out.returncode == 2, out.stdout + out.stderr
        assert f"refused user '{user}' the virtual host '{vhost}'" in out.stderr, out.stderr
        assert f"rabbitmqctl set_permissions -p {vhost} {user}" in out.stderr
        # a least-privilege user: may enter, may not declare the shared exchanges
        rabbitmqctl("set_permissions", "-p", vhost, user, "^own$", "^own$", "^own$")
        out = bootstrap(f"amqp://{user}:{secret}@127.0.0.1:5672/{vhost}")
        assert out.returncode == 2, out.stdout + out.stderr
        assert "must be the broker's owner" in out.stderr, out.stderr
        assert "rabbitmq-server -detached" not in out.stderr
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_user", user], capture_output=True,
                       timeout=60)


def test_a_broker_that_does_not_answer_is_still_told_how_to_start():
    out = bootstrap("amqp://guest:guest@127.0.0.1:1//")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "RabbitMQ is not reachable" in out.stderr and "rabbitmq-server -detached" in out.stderr


def test_a_non_default_vhost_made_as_the_readme_says_is_taken():
    import re

    from harness.processes import REPO

    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"`(rabbitmqctl (?:add_vhost|set_permissions) [^`]+)`", readme)
    assert [c.split()[1] for c in commands] == ["add_vhost", "set_permissions"], commands
    name = f"readme-{uuid.uuid4().hex[:8]}"
    try:
        for command in commands:
            out = subprocess.run(["bash", "-c", command.replace(" products", f" {name}")],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, (command, out.stdout + out.stderr)
        out = bootstrap(f"amqp://guest:guest@127.0.0.1:5672/{name}")
        # past the broker (shared exchanges declared in the vhost), stopped at the database
        assert f"RabbitMQ   ok  (amqp://127.0.0.1:5672/{name}" in out.stdout, out.stdout
        assert "PostgreSQL is not reachable" in out.stderr, out.stderr
    finally:
        vhosts.vhost_delete(name)
