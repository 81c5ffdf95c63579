"""Group commit (workers/grouping.py): tasks running at once in one worker process share a
transaction, and each still gets exactly its own share of the result, its own errors, and its
own events back when a shared write fails."""

import threading
import time

import pytest
from django.db import OperationalError, connections

from catalog_project.catalog.models import Product
from catalog_project.catalog.services import product_events_apply
from workers.grouping import GroupCommit, GroupFailed, Share

from .events import event, parsed


class Result:
    def __init__(self, events, applied_events):
        self.applied_events = tuple(applied_events)
        self.applied = len(self.applied_events)
        self.stale = len(events) - self.applied


def run_together(group: GroupCommit, batches: list[list], *, hold=None) -> list:
    """Each batch handed to ``group.apply`` from its own thread, all at once; their outcomes
    (a result or the exception) in the batches' order."""
    out: list = [None] * len(batches)
    start = threading.Barrier(len(batches))

    def run(i):
        start.wait(timeout=10)
        try:
            out[i] = group.apply(batches[i])
        except BaseException as exc:  # noqa: BLE001 - compared by the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    return out


def test_waiting_tasks_share_one_write_and_each_gets_its_own_share():
    calls = []
    entered = threading.Event()
    release = threading.Event()

    def apply(*, events):
        calls.append(list(events))
        if len(calls) == 1:  # the first write waits until every other task is waiting
            entered.set()
            assert release.wait(10)
        return Result(events, [e for e in events if e[1] % 2 == 0])  # "even" ones change

    group = GroupCommit(apply)
    batches = [[(i, j) for j in range(3)] for i in range(5)]
    out: dict = {}
    first = threading.Thread(target=lambda: out.setdefault(0, group.apply(batches[0])))
    first.start()
    assert entered.wait(10)
    others = [threading.Thread(target=lambda i=i: out.setdefault(i, group.apply(batches[i])))
              for i in range(1, 5)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 10
    while len(group._waiting) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert len(calls) == 2, calls  # the lone first write, then the four others in one
    assert sorted(calls[1]) == sorted(e for b in batches[1:] for e in b)
    for i, batch in enumerate(batches):
        share = out[i]
        assert share.applied_events == tuple(e for e in batch if e[1] % 2 == 0)
        assert (share.applied, share.stale) == (2, 1)
    assert isinstance(out[1], Share)


def test_a_transient_error_reaches_every_task_of_the_write_as_it_is():
    error = OperationalError("server closed the connection unexpectedly")

    def apply(*, events):
        time.sleep(0.05)
        raise error

    out = run_together(GroupCommit(apply), [[1], [2], [3], [4]])
    assert all(o is error for o in out), out


def test_a_permanent_error_of_a_shared_write_sends_each_task_back_to_its_own_events():
    blocker = threading.Event()

    def apply(*, events):
        if events == ["first"]:
            assert blocker.wait(10)
        if "bad" in events:
            raise ValueError("value too long for type character varying(200)")
        return Result(events, events)

    group = GroupCommit(apply)
    first = threading.Thread(target=group.apply, args=(["first"],))
    first.start()
    deadline = time.monotonic() + 10
    while not group._writing and time.monotonic() < deadline:
        time.sleep(0.01)
    out: dict = {}
    names = ["a", "bad", "c"]
    threads = [threading.Thread(target=lambda n=n: out.setdefault(n, _outcome(group, [n])))
               for n in names]
    for t in threads:
        t.start()
    while len(group._waiting) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    blocker.set()
    for t in [first, *threads]:
        t.join(10)
    # the three shared one write, which failed: each is told to try its own events alone
    assert all(isinstance(out[n], GroupFailed) for n in names), out
    assert isinstance(out["bad"].error, ValueError)
    # alone, a task gets the error itself, never GroupFailed
    with pytest.raises(ValueError):
        group.apply(["bad"])
    assert group.apply(["a"]).applied == 1


def _outcome(group, batch):
    try:
        return group.apply(batch)
    except BaseException as exc:  # noqa: BLE001
        return exc


def test_a_bounded_write_leaves_the_rest_for_the_next():
    sizes = []
    gate = threading.Event()

    def apply(*, events):
        sizes.append(len(events))
        gate.wait(0.2)
        return Result(events, events)

    out = run_together(GroupCommit(apply, max_events=250),
                       [[object() for _ in range(100)] for _ in range(6)])
    assert all(isinstance(o, (Share, Result)) and o.applied == 100 for o in out), out
    assert max(sizes) <= 250 and sum(sizes) == 600, sizes


@pytest.mark.django_db(transaction=True)
def test_shared_writes_on_the_real_database_end_at_the_newest_version():
    """Threads of one process, each with its own database connection, writing overlapping
    versions of the same products through one GroupCommit: every row ends at its highest
    version whatever shares a transaction, and the shares add up."""
    group = GroupCommit(product_events_apply)
    batches = [parsed(*[event(pid, v) for pid in range(1, 21)]) for v in (3, 1, 2, 5, 4)]
    try:
        out = run_together(group, batches)
    finally:
        connections.close_all()
    assert not [o for o in out if isinstance(o, BaseException)], out
    assert sum(o.applied + o.stale for o in out) == 100
    assert set(Product.objects.values_list("version", flat=True)) == {5}
    assert Product.objects.count() == 20
