"""Group commit: the tasks running at the same moment in one worker process write their events
in one transaction.

Each task validates its own message's events, then hands the valid ones to ``GroupCommit.apply``
and waits there. Whichever waiting task finds no write in progress becomes the leader: it takes
every batch handed in so far (its own and the others', up to ``max_events``), calls the
subscriber's ``apply`` once with all of them (one transaction), and hands each task its share of
the result. Each task then returns as usual, and Celery acks its message: after the commit, as
before. A task that arrives while a write is in progress is in the next one, so under load
messages share commits, and a lone message is written at once (no waiting for company).

If the shared write fails, every task in it gets the error and handles it as if the write had
been its own (workers/handling.py): a transient error is retried or held per message; a
permanent one sends each task back to writing its own events alone (``GroupFailed``), so an event
the database refuses is found and parked with its own message's events only.

With the thread pool (workers/pool.py) the tasks of a worker are threads of one process and
share commits; with prefork each child is alone, and this is a plain call."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from workers.errors import transient


class GroupFailed(Exception):
    """The shared write failed for good; retry this task's events on their own."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error


@dataclass
class _Batch:
    events: list
    done: bool = False
    result: object = None
    error: BaseException | None = None
    shared: bool = False  # written together with other tasks' events
    applied: list = field(default_factory=list)


@dataclass(frozen=True)
class Share:
    """One task's part of a shared write: what ``apply`` returns (``applied``, ``stale``,
    ``applied_events``) for just its events."""

    applied: int
    stale: int
    applied_events: tuple = ()


class GroupCommit:
    def __init__(self, apply, *, max_events: int = 2000) -> None:
        self._apply = apply
        self._max_events = max_events
        self._cond = threading.Condition()
        self._waiting: list[_Batch] = []
        self._writing = False

    def apply(self, events: list):
        """``apply(events=events)``, possibly in one transaction with other tasks' events.
        Returns this task's share; raises what the write raised (transient), or ``GroupFailed``
        if a write shared with other tasks failed otherwise."""
        mine = _Batch(list(events))
        with self._cond:
            self._waiting.append(mine)
            while not mine.done:
                if self._writing:
                    self._cond.wait()
                    continue
                group = self._take()
                self._writing = True
                self._cond.release()
                try:
                    self._write(group)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if mine.error is not None:
            if mine.shared and not _transient(mine.error):
                raise GroupFailed(mine.error) from mine.error
            raise mine.error
        return mine.result

    def _take(self) -> list[_Batch]:
        group, size = [], 0
        while self._waiting and (not group
                                 or size + len(self._waiting[0].events) <= self._max_events):
            batch = self._waiting.pop(0)
            group.append(batch)
            size += len(batch.events)
        return group

    def _write(self, group: list[_Batch]) -> None:
        if len(group) == 1:
            batch = group[0]
            try:
                batch.result = self._apply(events=batch.events)
            except BaseException as exc:  # noqa: BLE001 - handed to the task that owns it
                batch.error = exc
            batch.done = True
            return
        owner = {}
        events = []
        for batch in group:
            batch.shared = True
            for event in batch.events:
                owner[id(event)] = batch
                events.append(event)
        try:
            result = self._apply(events=events)
        except BaseException as exc:  # noqa: BLE001
            for batch in group:
                batch.error, batch.done = exc, True
            return
        for event in result.applied_events:
            batch = owner.get(id(event))
            if batch is not None:
                batch.applied.append(event)
        for batch in group:
            batch.result = Share(applied=len(batch.applied),
                                 stale=len(batch.events) - len(batch.applied),
                                 applied_events=tuple(batch.applied))
            batch.done = True


def _transient(exc: BaseException) -> bool:
    return transient(exc)
