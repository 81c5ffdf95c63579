"""`manage.py dlq [--subscriber audit] list|replay|purge` against the real broker and worker."""

import io
import json
import re
import uuid

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
                                   "character varying(200)", *, task_id=None, body=None, **kw):
    """What the worker parks when the database refused a value: valid, replayable (after the
    column was widened, say). ``task_id``: that of an earlier park, for another copy of it (as
    a worker parks a message again when its connection was lost before the original's ack).
    Returns the task id."""
    headers = {"x-park-reason": reason}
    if task_id is not None:
        headers.update(id=task_id, root_id=task_id)
    return publish_raw(task_body(events) if body is None else body, exchange=DLX,
                       routing_key="catalog.products.dlq", headers=headers, **kw)


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


def entries(out: str) -> list[str]:
    """The first line of each entry of `dlq list`."""
    return re.findall(r"^ *\d+  task .*$", out, re.M)


@pytest.fixture
def replayed(worker):
    """Every message a replay sends to the catalog's queue (through its private exchange) also
    lands in this spy queue, while the worker consumes the catalog queue: call it to fetch them."""
    spy = amqp.spy_queue("test.dlq.replayed", "catalog", "catalog.products")
    amqp.drain(spy.name)
    yield lambda: amqp.drain(spy.name)
    amqp.queue_delete(spy.name)


def test_list_shows_each_parked_message_once_with_its_copies(worker, dlq_empty):
    twice, once = event(100, 1), event(101, 1)
    task = park_directly([twice])
    park_directly([once])
    park_directly([twice], task_id=task)  # the same park again, after another message
    wait_until(lambda: amqp.queue_depth("catalog.products.dlq") == 3, timeout=10)
    out = dlq("list")
    assert len(entries(out)) == 2, out
    assert entries(out)[0] == f"   1  task {task}  (2 copies)", out
    assert "copies)" not in entries(out)[1] and once["event_id"] in out
    assert out.count(twice["event_id"]) == 1, out
    assert "2 parked message(s) shown (3 in the queue, 1 duplicate copy)" in out
    assert amqp.queue_depth("catalog.products.dlq") == 3  # list removes nothing
    # --limit bounds the messages read, copies included: the copy is not reached
    out = dlq("list", "--limit", "2")
    assert len(entries(out)) == 2 and "copies)" not in out, out
    assert "2 parked message(s) shown (the first 2 of 3 in the queue, --limit 2; " \
        "0 duplicate copies among them)" in out
    assert amqp.queue_depth("catalog.products.dlq") == 3


def test_replay_sends_one_copy_of_each_parked_message_and_removes_every_copy(
        worker, dlq_empty, replayed):
    thrice, twice, once = event(110, 1), event(111, 1), event(112, 1)
    tasks = {}
    for ev, copies in ((thrice, 3), (twice, 2), (once, 1)):
        tasks[ev["event_id"]] = park_directly([ev])
        for _ in range(copies - 1):
            park_directly([ev], task_id=tasks[ev["event_id"]])
    wait_until(lambda: amqp.queue_depth("catalog.products.dlq") == 6, timeout=10)

    def sent(messages):
        return sorted((m.headers["id"], json.loads(m.body)[1]["events"][0]["event_id"])
                      for m in messages)

    out = dlq("replay", twice["event_id"])
    assert sent(replayed()) == [(tasks[twice["event_id"]], twice["event_id"])]
    assert "replayed 1 message(s); 2 left parked; 1 duplicate copy removed with them" in out
    assert amqp.queue_depth("catalog.products.dlq") == 4
    wait_until(lambda: Product.objects.filter(pk=111).exists(), timeout=20)

    out = dlq("replay", "--all")
    assert sent(replayed()) == sorted((tasks[e["event_id"]], e["event_id"])
                                      for e in (thrice, once))
    assert "replayed 2 message(s); 0 left parked; 2 duplicate copies removed with them" in out
    assert amqp.queue_depth("catalog.products.dlq") == 0
    wait_until(lambda: Product.objects.filter(pk__in=[110, 112]).count() == 2, timeout=20)


def test_same_task_with_another_reason_body_or_content_type_is_not_a_copy(
        worker, dlq_empty, replayed):
    task = str(uuid.uuid4())
    first, second = event(120, 1), event(121, 1)
    park_directly([first], "reason one", task_id=task)
    park_directly([first], "reason two", task_id=task)
    park_directly([second], "reason one", task_id=task)
    park_directly([first], "reason one", task_id=task, content_type="application/x-other")
    wait_until(lambda: amqp.queue_depth("catalog.products.dlq") == 4, timeout=10)
    out = dlq("list")
    assert len(entries(out)) == 4 and not any("copies" in e for e in entries(out)), out
    assert "4 parked message(s) shown (4 in the queue, 0 duplicate copies)" in out
    out = dlq("replay", task)
    assert "replayed 4 message(s); 0 left parked; 0 duplicate copies removed with them" in out
    assert len(replayed()) == 4
    wait_until(lambda: Product.objects.filter(pk__in=[120, 121]).count() == 2, timeout=20)
    # the worker refuses application/x-other: that one is parked again
    wait_until(lambda: amqp.queue_depth("catalog.products.dlq") == 1, timeout=20)


def test_without_a_task_id_or_a_readable_body_copies_are_byte_equal_ones(worker, dlq_empty):
    garbage = b"\x00\xffnot a task message"
    for body in (garbage, garbage, garbage + b"!"):
        park_directly([], "undecodable body", task_id="", body=body,
                      content_type="application/octet-stream")
    wait_until(lambda: amqp.queue_depth("catalog.products.dlq") == 3, timeout=10)
    out = dlq("list")
    assert entries(out) == ["   1  task   (2 copies)", "   2  task "], out
    assert "2 parked message(s) shown (3 in the queue, 1 duplicate copy)" in out


def test_the_workers_parks_of_a_redelivered_message_are_copies(worker, dlq_empty):
    """The worker parks an invalid event as a task message of its own: parked again when the
    original comes back (its ack lost with the connection), the copy has another task id and
    the same ``x-parked-from-task``. Here the redelivery is the same message published again."""
    bad = event(130, 1)
    bad["price"] = "free"  # an extra field: invalid envelope
    task = str(uuid.uuid4())
    for depth in (1, 2):
        publish_raw(task_body([bad]), headers={"id": task, "root_id": task})
        wait_until(lambda d=depth: amqp.queue_depth("catalog.products.dlq") == d, timeout=20)
    out = dlq("list")
    assert len(entries(out)) == 1 and entries(out)[0].endswith("  (2 copies)"), out
    assert "copies also as task " in out
    assert "1 parked message(s) shown (2 in the queue, 1 duplicate copy)" in out
    parked = amqp.drain("catalog.products.dlq")
    assert [m.headers["x-parked-from-task"] for m in parked] == [task, task]
    assert len({m.headers["id"] for m in parked}) == 2


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
