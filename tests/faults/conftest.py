"""Fault-injection suite: every scenario runs the real processes against the real RabbitMQ and
PostgreSQL, breaks something, restores it (always, in a finalizer), and ends with the reconcile
check. `make faults` prints the table below; `make test` runs the `quick` subset."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass

import pytest

from harness import private_rabbit, processes
from harness.stack import Stack, wait_converged


@dataclass
class Row:
    scenario: str
    sent: int
    applied: int
    lost: int
    duplicates: int
    parked: int
    seconds: float | None
    ok: bool


RESULTS: list[Row] = []


class Report:
    def finish(self, stack: Stack, scenario: str, *, fault_end: float, expect_parked: int = 0,
               expect_set_aside: int = 0, deadline: float = 120,
               parked_copies: bool = False) -> Row:
        """Wait for convergence, record the row, then assert: nothing lost, outbox drained,
        exactly the injected poison parked (DLQ) or set aside (by the relay).

        ``parked_copies``: park publishes timed out during the fault and may have arrived
        later, so the DLQ may hold copies of a poison message: count distinct ones as parked,
        the copies as duplicates."""
        try:
            wait_converged(stack, deadline)
            seconds = round(time.monotonic() - fault_end, 1)
        except AssertionError:
            seconds = None
        out = stack.reconcile().stdout
        match = re.search(r"(\d+) drifted", out)
        drift = int(match.group(1)) if match else -1
        sent, pending = stack.outbox()
        totals = stack.worker_totals()
        parked = stack.dlq_depth()
        copies = 0
        if parked_copies:
            total, parked = stack.dlq_distinct()
            copies = total - parked
        set_aside = stack.set_aside()
        row = Row(scenario=scenario, sent=sent, applied=totals["applied"], lost=drift + pending,
                  duplicates=totals["stale"] + copies, parked=parked + set_aside,
                  seconds=seconds,
                  ok=seconds is not None and drift == 0 and pending == 0
                  and parked == expect_parked and set_aside == expect_set_aside)
        RESULTS.append(row)
        assert seconds is not None, f"{scenario}: no convergence in {deadline}s\n{out}"
        assert drift == 0 and pending == 0, f"{scenario}: drift {drift}, pending {pending}"
        assert parked == expect_parked, f"{scenario}: parked {parked} != {expect_parked}"
        assert set_aside == expect_set_aside, \
            f"{scenario}: set aside {set_aside} != {expect_set_aside}"
        return row


@pytest.fixture
def report() -> Report:
    return Report()


@pytest.fixture
def private_rabbit_node():
    """A RabbitMQ node of this test alone (alarms must never be raised on the shared broker);
    stopped and deleted in the finalizer."""
    with private_rabbit.node("faults") as node:
        yield node


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    header = (f"{'scenario':<44} {'sent':>6} {'applied':>8} {'lost':>5} {'dups':>6} "
              f"{'parked':>6} {'converge s':>10}")
    terminalreporter.section("fault injection: nothing lost")
    terminalreporter.write_line(header)
    terminalreporter.write_line("-" * len(header))
    for r in RESULTS:
        secs = f"{r.seconds:.1f}" if r.seconds is not None else "never"
        terminalreporter.write_line(
            f"{r.scenario:<44} {r.sent:>6} {r.applied:>8} {r.lost:>5} {r.duplicates:>6} "
            f"{r.parked:>6} {secs:>10}" + ("" if r.ok else "  FAILED"))
    terminalreporter.write_line(
        "sent = events recorded by the admin; applied = events that changed a catalog row; "
        "dups = duplicate or stale deliveries absorbed; parked = messages in the DLQ + events "
        "the relay set aside; "
        "lost = drift found by reconcile + events left in the outbox")
    processes.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (processes.ARTIFACTS / "faults.json").write_text(
        json.dumps([asdict(r) for r in RESULTS], indent=2))
