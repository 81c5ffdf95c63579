"""`manage.py dlq [--subscriber audit] list|replay|purge` against the real broker and worker."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from kombu import Exchange

from catalog_project.catalog.models import Product
from catalog_project.topology import AUDIT
from harness import amqp
from harness.waiting import wait_until

from .events import event
from .test_worker import publish_raw, task_body

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

DLX = Exchange("catalog.dlx", "direct", durable=True)


def dlq(*args) -> str:
    out = io.StringIO()
    call_command("dlq", *args, stdout=out)
    return out.getvalue()


def park_directly(events, reason="cannot be stored: DataError: value too long for type "
                                   "character varying(200)"):
    """What the worker parks when the database refused a value: valid, replayable (after the
    column was widened, say)."""
    publish_raw(task_body(events), exchange=DLX, routing_key="catalog.products.dlq",
                headers={"x-park-reason": reason})


def test_list_shows_reasons_and_removes_nothing(worker, dlq_empty):
    bad = event(50, 1)
    bad["price"] = "free"  # an extra field: invalid envelope
    publish_raw(task_body([bad]))
    wait_until(lambda: amqp.queue_depth("catalog.products.dlq") == 1, timeout=20)
    out = dlq("list")
    assert "Additional properties are not allowed" in out and bad["event_id"] in out
    assert "1 parked message(s) shown" in out
    assert amqp.queue_depth("catalog.products.dlq") == 1


def test_replay_selected_then_all(worker, dlq_empty):
    first, second = event(60, 1), event(61, 1)
    park_directly([first])
    park_directly([second])
    wait_until(lambda: amqp.queue_depth("catalog.products.dlq") == 2, timeout=10)
    assert "replayed 1 message(s); 1 left parked" in dlq("replay", first["event_id"])
    wait_until(lambda: Product.objects.filter(pk=60).exists(), timeout=20)
    assert not Product.objects.filter(pk=61).exists()
    assert amqp.queue_depth("catalog.products.dlq") == 1
    assert "replayed 1 message(s)" in dlq("replay", "--all")
    wait_until(lambda: Product.objects.filter(pk=61).exists(), timeout=20)
    assert amqp.queue_depth("catalog.products.dlq") == 0


def test_replayed_poison_is_parked_again_not_lost(worker, dlq_empty):
    bad = event(70, 1)
    del bad["data"]["price"]
    park_directly([bad], reason="data: 'price' is a required property")
    wait_until(lambda: amqp.queue_depth("catalog.products.dlq") == 1, timeout=10)
    dlq("replay", "--all")

    def parked_again():
        msgs = amqp.drain("catalog.products.dlq")
        return msgs and json.loads(msgs[0].body)[1]["events"][0]["event_id"] == bad["event_id"]

    wait_until(parked_again, timeout=20)


def test_purge_needs_yes(worker, dlq_empty):
    park_directly([event(80, 1)])
    wait_until(lambda: amqp.queue_depth("catalog.products.dlq") == 1, timeout=10)
    with pytest.raises(CommandError):
        dlq("purge")
    assert "purged 1 message(s)" in dlq("purge", "--yes")
    assert amqp.queue_depth("catalog.products.dlq") == 0
    with pytest.raises(CommandError):
        dlq("replay")


@pytest.fixture
def audit_queues():
    """The audit log's queues (no audit worker here: what is replayed stays in its queue)."""
    with amqp.broker_connection() as conn:
        AUDIT.declare(conn.default_channel)
    for name in ("audit.products", "audit.products.dlq"):
        amqp.drain(name)
    yield
    for name in ("audit.products", "audit.products.dlq"):
        amqp.drain(name)


def test_audit_dlq_is_listed_and_replayed_to_the_audit_queue_only(audit_queues):
    parked = event(90, 1)
    publish_raw(task_body([parked]), exchange=Exchange("audit.dlx", "direct", durable=True),
                routing_key="audit.products.dlq", headers={"x-park-reason": "audit test reason"})
    wait_until(lambda: amqp.queue_depth("audit.products.dlq") == 1, timeout=10)
    catalog_before = amqp.queue_depth("catalog.products")
    out = dlq("--subscriber", "audit", "list")
    assert "audit test reason" in out and parked["event_id"] in out
    assert "1 parked message(s) shown" in out
    assert "0 parked message(s) shown" in dlq("list")  # the catalog's DLQ is another queue
    assert "replayed 1 message(s)" in dlq("--subscriber", "audit", "replay", "--all")
    assert amqp.queue_depth("audit.products.dlq") == 0
    replayed = amqp.drain("audit.products")
    assert [json.loads(m.body)[1]["events"][0]["event_id"] for m in replayed] == \
        [parked["event_id"]]
    assert "x-park-reason" not in replayed[0].headers
    assert amqp.queue_depth("catalog.products") == catalog_before


def test_replaying_an_id_that_is_not_parked_is_an_error_not_a_success(worker, dlq_empty):
    kept = event(70, 1)
    park_directly([kept])
    wait_until(lambda: amqp.queue_depth("catalog.products.dlq") == 1, timeout=10)
    with pytest.raises(CommandError, match="not in catalog.products.dlq: no-such-task-id"):
        dlq("replay", "no-such-task-id")
    assert amqp.queue_depth("catalog.products.dlq") == 1  # nothing else touched


@pytest.mark.parametrize("args", [["dlq", "list"], ["dlq", "--subscriber", "audit", "list"],
                                  ["dlq", "replay", "--all"], ["topology", "check"],
                                  ["topology", "upgrade", "--if-exists"]])
def test_an_unreachable_broker_is_one_line_and_exit_status_2(args):
    """For scripts and monitors: 2 means "could not ask the broker", 1 what was found."""
    import subprocess
    import sys

    from harness import processes

    env = processes.base_env(CELERY_BROKER_URL="amqp://guest:s3cret@127.0.0.1:1//",
                             CATALOG_BROKER_CONNECT_TIMEOUT="2")
    out = subprocess.run([sys.executable, "catalog_project/manage.py", *args], env=env,
                         cwd=processes.REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("CommandError: broker unreachable at amqp://guest:**@127.0.0.1:1")
    assert "s3cret" not in out.stderr + out.stdout
