"""The workers' task-event dispatcher (workers/events.py) against the real broker: Flower gets the
same messages as from Celery's own, and a task thread never publishes on the consumer's
connection (a flush it triggers is handed to the loop), and the task events a lost connection
still held go out on the next."""

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


def test_task_events_buffered_when_the_connection_is_lost_go_out_on_the_next(events_queue):
    """Celery makes a new dispatcher after a reconnect and hands it the old one's unsent events
    (``extend_buffer``); the task events waiting for the next flush are among them."""
    from workers.catalog import app

    with amqp.broker_connection() as lost, amqp.broker_connection() as conn:
        old = app.events.Dispatcher(lost, hostname="events-test@here", enabled=True,
                                    groups=["task"], buffer_group=["task"],
                                    on_send_buffered=lambda: None)
        new = app.events.Dispatcher(conn, hostname="events-test@here", enabled=True,
                                    groups=["task"], buffer_group=["task"],
                                    on_send_buffered=lambda: None)
        try:
            for i in range(3):
                old.send("task-succeeded", uuid=f"t{i}", result="{}", runtime=0.1)
            old.disable()  # as Celery's Events step does with the lost connection's
            new.extend_buffer(old)
            new.flush()
            got = wait_until(lambda: amqp.drain(events_queue), timeout=10)
        finally:
            new.close()
    assert [e["uuid"] for m in got for e in json.loads(m.body)] == ["t0", "t1", "t2"]
