"""The subscribers' default execution pool: Celery's thread pool, resizable.

    celery -A workers.catalog worker -P workers.pool:ThreadPool -c 4

Why threads (docs/performance.md, "The drain"): a task spends most of its time waiting for the
database, and a thread pool runs it in the worker's own process: no pickling of each 40 KB
message to a child process and back, no child idling until the main process hands it the next
job, the body decoded once, and tasks of the same process can share one transaction
(workers/grouping.py). Celery's prefork pool stays available (``-P prefork``).

What Celery's thread pool lacks and this one adds: ``pool_grow`` / ``pool_shrink`` (remote
control, documented in the README) and the pool's size in ``inspect stats``. A thread cannot be
killed: time limits do not apply in a thread pool (every wait inside a task is bounded by its own
timeout instead: the database's answer timeout, publish confirms, the pause's hold), and a task
running when the broker connection is lost finishes its write or stops at its next retry
(workers/handling.py, DeliveryLost); its message comes back from the broker (acks after the
write: the write is idempotent)."""

from __future__ import annotations

import threading

from celery.concurrency.base import apply_target
from celery.concurrency.thread import ApplyResult
from celery.concurrency.thread import TaskPool as CeleryThreadPool

# Set in a process whose tasks run in threads of the worker's own process: the consumer then
# hands the task the body it already decoded (workers/handling.py, ProductEventsRequest).
IN_PROCESS = False

# How many times this worker's broker connection was lost (workers/consumer.py counts). A task
# running in a thread when it was lost cannot settle its message any more: the broker delivers
# it again. The task sees this (workers/handling.py) and stops rather than hold the database
# for it or send it round the delay queue (a second copy).
_connections_lost = 0


def connection_lost() -> None:
    global _connections_lost
    _connections_lost += 1


def connections_lost() -> int:
    return _connections_lost


class _Gate:
    """At most ``size`` tasks run at once; the size can change while tasks run."""

    def __init__(self, size: int) -> None:
        self._cond = threading.Condition()
        self._size = size
        self._running = 0

    @property
    def size(self) -> int:
        return self._size

    def resize(self, size: int) -> None:
        with self._cond:
            self._size = max(1, size)
            self._cond.notify_all()

    def __enter__(self):
        with self._cond:
            while self._running >= self._size:
                self._cond.wait()
            self._running += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify()


class ThreadPool(CeleryThreadPool):
    """Celery's thread pool with ``grow`` and ``shrink``: ``-c N`` threads run tasks at once;
    ``pool_grow k`` adds k, ``pool_shrink k`` removes k (a shrink waits for running tasks to
    finish; the threads stay, idle, and are reused by a later grow)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._gate = _Gate(self.limit)

    def on_start(self) -> None:
        global IN_PROCESS
        IN_PROCESS = True
        super().on_start()

    def on_apply(self, target, args=None, kwargs=None, callback=None, accept_callback=None,
                 **_options):
        return ApplyResult(self.executor.submit(self._gated, target, args, kwargs, callback,
                                                accept_callback))

    def _gated(self, *job) -> None:
        with self._gate:  # accepted (task-started) only once it runs
            apply_target(*job)

    def grow(self, n: int = 1) -> None:
        self.limit += n
        self.executor._max_workers = max(self.executor._max_workers, self.limit)
        self._gate.resize(self.limit)

    def shrink(self, n: int = 1) -> None:
        self.limit = max(1, self.limit - n)
        self._gate.resize(self.limit)

    @property
    def num_processes(self) -> int:
        return self.limit

    def _get_info(self):
        info = super()._get_info()
        info["max-concurrency"] = self.limit
        return info
