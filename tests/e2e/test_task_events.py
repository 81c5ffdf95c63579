"""The catalog worker's task events (what Flower shows), with a real worker process and broker:
every task's "received" and "succeeded" reach the event exchange, a few tasks' worth in one
``task.multi`` message rather than a message per event, and none is lost when the worker stops
(workers/consumer.py, workers/events.py)."""

import json
import subprocess
import time
import uuid
from urllib.parse import unquote, urlsplit

import pytest
from kombu import Connection, Exchange, Queue

from bench.run import publish_messages, task_messages
from harness import amqp
from harness.stack import running_stack
from harness.waiting import wait_until

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def stack():
    with running_stack("taskevents", start=("worker",)) as s:
        yield s


@pytest.fixture
def events_queue(stack):
    """A queue bound to Celery's event exchange for task events, as Flower binds one."""
    url = stack.env["CELERY_BROKER_URL"]
    name = f"events-spy-{uuid.uuid4().hex[:8]}"
    with Connection(url, connect_timeout=5) as conn:
        Queue(name, Exchange("celeryev", "topic", durable=True), routing_key="task.#",
              auto_delete=False)(conn.default_channel).declare()
    yield name
    with Connection(url, connect_timeout=5) as conn:
        conn.default_channel.queue_delete(queue=name)


def _events(stack, queue: str, messages: list) -> list[dict]:
    """Drain ``queue`` into ``messages`` (kept across polls); every event they hold."""
    messages.extend(amqp.drain(queue, url=stack.env["CELERY_BROKER_URL"]))
    out = []
    for m in messages:
        body = json.loads(m.body)
        out.extend(body if isinstance(body, list) else [body])
    return out


def _published(stack, start_id: int, tasks: int, spacing: float) -> set[str]:
    """``tasks`` one-event task messages, one every ``spacing`` seconds (web-like traffic)."""
    ids = set()
    for i, message in enumerate(task_messages(tasks, 1, start_id)):
        publish_messages(stack, [message])
        ids.add(message.headers["id"])
        if i < tasks - 1:
            time.sleep(spacing)  # the traffic's shape, not a wait for a result
    return ids


def _applied(stack, start_id: int, tasks: int) -> bool:
    return stack.sql("catalog", "SELECT count(*) FROM catalog_product WHERE id >= %s AND "
                     "id < %s", [start_id, start_id + tasks])[0][0] == tasks


def _states(events: list[dict]) -> dict[str, set[str]]:
    states: dict[str, set[str]] = {}
    for e in events:
        states.setdefault(e["uuid"], set()).add(e["type"])
    return states


def _all_arrive(stack, queue: str, ids: set[str], what: str) -> list:
    """Wait until every task of ``ids`` has its "received" and "succeeded" event in ``queue``;
    the messages they came in."""
    messages: list = []
    wait_until(lambda: all(_states(_events(stack, queue, messages)).get(i) == {
        "task-received", "task-succeeded"} for i in ids), timeout=30,
        message=lambda: f"{what} ({len(messages)} messages so far):\n"
                        f"{stack.proc('worker').tail()}")
    return messages


def test_every_task_event_arrives_a_few_tasks_to_a_message(stack, events_queue):
    ids = _published(stack, 1, 30, 0.02)
    wait_until(lambda: _applied(stack, 1, 30), timeout=30,
               message=lambda: f"30 products applied:\n{stack.proc('worker').tail()}")
    messages = _all_arrive(stack, events_queue, ids, "every task's events")
    events = _events(stack, events_queue, messages)
    assert len(events) == 2 * len(ids)  # each once
    # one message per event (or per turn of the consumer loop) would be ~60 messages
    assert len(messages) <= len(events) // 3, len(messages)


def test_the_last_task_events_are_published_when_the_worker_stops(stack, events_queue):
    for round_ in range(3):  # a stop right after the tasks: their events are still buffered
        start = 1000 + 100 * round_
        ids = _published(stack, start, 5, 0.005)
        wait_until(lambda start=start: _applied(stack, start, 5), timeout=30,
                   message=lambda: f"5 products applied:\n{stack.proc('worker').tail()}")
        stack.proc("worker").stop()
        messages: list = []
        states = _states(_events(stack, events_queue, messages))
        missing = {i: states.get(i, set()) for i in ids
                   if states.get(i, set()) != {"task-received", "task-succeeded"}}
        assert not missing, f"round {round_}: events lost at the stop: {missing}"
        stack.start("worker")
        stack.wait_worker_ready()


def test_task_events_keep_coming_across_lost_connections(stack, events_queue):
    """The broker drops the worker's connections (its event connection too) right after the
    tasks ran, three times: every task's events arrive, those of the tasks run after each
    reconnect too (the flush is a timer on the consumer loop, which a reconnect resets). That
    events still buffered at the loss are carried over: tests/catalog/test_events.py."""
    vhost = unquote(urlsplit(stack.env["CELERY_BROKER_URL"]).path[1:])
    for round_ in range(3):
        start = 2000 + 100 * round_
        ids = _published(stack, start, 5, 0.005)
        wait_until(lambda start=start: _applied(stack, start, 5), timeout=30,
                   message=lambda: f"5 products applied:\n{stack.proc('worker').tail()}")
        subprocess.run(["rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "test"],
                       check=True, capture_output=True, timeout=60)
        _all_arrive(stack, events_queue, ids, f"round {round_}: the events after a reconnect")
    assert stack.proc("worker").alive()
