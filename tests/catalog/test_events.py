"""The workers' task-event dispatcher (workers/events.py) against the real broker: Flower gets the
same messages as from Celery's own, and a task thread never publishes on the consumer's
connection (a flush it triggers is handed to the loop)."""

import json
import threading
import uuid

import pytest
from kombu import Exchange, Queue

from harness import amqp
from harness.waiting import wait_until

pytestmark = pytest.mark.broker


@pytest.fixture
def events_queue():
    """A queue bound to Celery's event exchange, as Flower binds one."""
    name = f"events-spy-{uuid.uuid4().hex[:8]}"
    with amqp.broker_connection() as conn:
        Queue(name, Exchange("celeryev", "topic", durable=True), routing_key="#",
              auto_delete=False)(conn.default_channel).declare()
    yield name
    amqp.queue_delete(name)


def test_a_flush_asked_for_by_a_task_thread_is_left_to_the_loop(events_queue):
    from workers.catalog import app

    handed = []
    with amqp.broker_connection() as conn:
        dispatcher = app.events.Dispatcher(conn, hostname="events-test@here", enabled=True,
                                           groups=["task"], buffer_group=["task"],
                                           on_send_buffered=lambda: handed.append(1))
        try:
            def task_thread():  # more events than the buffer holds: Celery flushes inline
                for i in range(dispatcher.buffer_limit + 6):
                    dispatcher.send("task-succeeded", uuid=f"t{i}", result="{}", runtime=0.1)

            thread = threading.Thread(target=task_thread)
            thread.start()
            thread.join(10)
            assert handed, "the thread's flush was not handed to the loop"
            assert amqp.drain(events_queue) == []  # nothing published from that thread
            dispatcher.flush()  # the loop's flush
            got = wait_until(lambda: amqp.drain(events_queue), timeout=10)
        finally:
            dispatcher.close()
    (message,) = got
    assert message.content_type == "application/json"
    assert message.properties.get("delivery_mode") == 1
    batch = json.loads(message.body)
    assert [e["uuid"] for e in batch] == [f"t{i}" for i in range(dispatcher.buffer_limit + 6)]
    assert {e["type"] for e in batch} == {"task-succeeded"}
    assert all(e["hostname"] == "events-test@here" for e in batch)
