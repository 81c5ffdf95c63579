"""`make chaos` in `make test`: a 60-second randomized fault run with a fixed seed
(harness/chaos.py), judged by the one checker; and the checker itself, fed broken states, finds
each kind of damage (a checker that cannot fail proves nothing)."""

from __future__ import annotations

import copy
import json

import pytest

from harness import chaos, checker, processes

pytestmark = [pytest.mark.broker, pytest.mark.quick]  # all of it in `make test`

SEED = 20261203


def test_chaos_run_of_60_seconds_with_a_fixed_seed():
    report = chaos.run(seconds=60, seed=SEED)
    processes.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (processes.ARTIFACTS / "chaos-make-test.json").write_text(
        json.dumps(report, indent=2, default=str))
    assert report["ok"], report["reasons"]
    kinds = {f["kind"] for f in report["faults"] if not f["error"]}
    assert len(kinds) >= 10, kinds  # the seed covers (nearly) every kind of fault


def test_the_schedule_is_a_function_of_the_seed():
    assert chaos.schedule(SEED, 60) == chaos.schedule(SEED, 60)
    assert chaos.schedule(SEED, 60) != chaos.schedule(SEED + 1, 60)
    plan = chaos.schedule(SEED, 600)
    by_resource = {}
    for p in plan:  # faults on one resource never overlap
        resource = next(k.resource for k in chaos.KINDS if k.name == p.kind)
        assert p.at >= by_resource.get(resource, 0), p
        by_resource[resource] = p.at + p.duration


GOOD = checker.State(
    admin={1: {"version": 3, "title": "a", "image": "", "price": "1.00", "description": ""}},
    tombstones={2: 2},
    catalog={1: {"version": 3, "deleted": False, "title": "a", "image": "", "price": "1.00",
                 "description": ""},
             2: {"version": 2, "deleted": True, "title": "b", "image": "", "price": "2.00",
                 "description": ""}},
    outbox_pending=0, set_aside=0, sent_event_ids={"e1"}, audit_event_ids={"e1"},
    dlq={"catalog": [b'[[], {"events": ["chaos-poison-0"'], "audit": [b"x chaos-poison-0"]})
WRITES = {1: checker.Write(version=3), 2: checker.Write(version=1, deleted=True)}
POISON = {0: "confirmed"}


def broken(change) -> checker.Verdict:
    state = copy.deepcopy(GOOD)
    change(state)
    return checker.judge(state, writes=WRITES, poison=POISON)


def test_the_checker_passes_a_good_state():
    verdict = checker.judge(GOOD, writes=WRITES, poison=POISON)
    assert verdict.ok and verdict.converged, verdict.reasons


@pytest.mark.parametrize(("change", "finding"), [
    (lambda s: s.catalog.pop(1), "1 lost"),
    (lambda s: s.catalog[1].update(version=2), "1 lost"),
    (lambda s: s.catalog[1].update(price="1.01"), "1 stale"),
    (lambda s: s.catalog[2].update(deleted=False), "1 resurrected"),
    (lambda s: s.catalog.update({9: s.catalog[1]}), "1 strangers"),
    (lambda s: s.admin[1].update(version=2), "acknowledged but not in the admin"),
    (lambda s: setattr(s, "outbox_pending", 4), "4 events still in the outbox"),
    (lambda s: setattr(s, "audit_event_ids", set()), "missing from the audit log"),
    (lambda s: s.dlq["catalog"].clear(), "catalog DLQ lacks injected poison [0]"),
    (lambda s: s.dlq["audit"].append(b"a valid event"), "audit DLQ holds 1 message(s) not"),
    (lambda s: s.dlq["catalog"].append(b"chaos-poison-5"), "never (successfully) injected"),
])
def test_the_checker_finds_each_kind_of_damage(change, finding):
    verdict = broken(change)
    assert not verdict.ok
    assert any(finding in reason for reason in verdict.reasons), verdict.reasons


def test_the_checker_counts_5xx_and_accepts_copies_of_parked_poison():
    state = copy.deepcopy(GOOD)
    state.dlq["catalog"] *= 3  # a park whose confirm timed out may land twice
    assert checker.judge(state, writes=WRITES, poison=POISON).ok
    assert "1 HTTP 5xx answers" in checker.judge(state, writes=WRITES, poison=POISON,
                                                 http_5xx=1).reasons
