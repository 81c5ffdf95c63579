"""`make chaos` in `make test`: a 60-second randomized fault run with a fixed seed
(harness/chaos.py), judged by the one checker; and the checker itself, fed broken states, finds
each kind of damage (a checker that cannot fail proves nothing)."""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time

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


POISON_BODY = b'[[], {"events": ["chaos-poison-0"'
POISON_EVENT = {"event_id": "p1", "type": "product.updated", "data": {"price": "free"}}
POISON = {0: checker.Poison("confirmed", POISON_BODY),
          1: checker.Poison("confirmed", chaos.task_body([POISON_EVENT]), POISON_EVENT)}
# as workers park them: a bad message untouched, a bad event alone in a new task message
PARKED = [POISON_BODY, chaos.task_body([POISON_EVENT]).replace(b", ", b",")]

GOOD = checker.State(
    admin={1: {"version": 3, "title": "a", "image": "", "price": "1.00", "description": "c1"},
           3: {"version": 2, "title": "c", "image": "", "price": "3.00", "description": "c3"}},
    tombstones={2: 3},
    catalog={1: {"version": 3, "deleted": False, "title": "a", "image": "", "price": "1.00",
                 "description": "c1"},
             2: {"version": 3, "deleted": True, "title": "b", "image": "", "price": "2.00",
                 "description": "c2"},
             3: {"version": 2, "deleted": False, "title": "c", "image": "", "price": "3.00",
                 "description": "c3"}},
    outbox_pending=0, set_aside=0, sent_event_ids={"e1"}, audit_event_ids={"e1"},
    outbox_event_ids={"e1"}, dlq={"catalog": list(PARKED), "audit": list(PARKED)})
# product 1: created, 2 updates answered; 2: created, 1 update answered, deleted; 3: created,
# 2 updates sent and left unanswered (one happened); c4: a create refused with a 400;
# c5: a create left unanswered (it did not happen)
WRITES = {1: checker.Write(version=3, updates=2),
          2: checker.Write(version=2, updates=1, deleted=True),
          3: checker.Write(version=1, unanswered=2)}
CREATES = {"c1": "answered", "c2": "answered", "c3": "answered", "c4": "refused",
           "c5": "unanswered"}


def broken(change) -> checker.Verdict:
    state = copy.deepcopy(GOOD)
    change(state)
    return checker.judge(state, writes=WRITES, creates=CREATES, poison=POISON)


def test_the_checker_passes_a_good_state():
    verdict = checker.judge(GOOD, writes=WRITES, creates=CREATES, poison=POISON)
    assert verdict.ok and verdict.converged, verdict.reasons


def _admin_product(description):
    return {"version": 1, "title": "x", "image": "", "price": "1.00", "description": description}


@pytest.mark.parametrize(("change", "finding"), [
    (lambda s: s.catalog.pop(1), "1 lost"),
    (lambda s: s.catalog[1].update(version=2), "1 lost"),
    (lambda s: s.catalog[1].update(price="1.01"), "1 stale"),
    (lambda s: s.catalog[2].update(deleted=False), "1 resurrected"),
    (lambda s: s.catalog.update({9: s.catalog[1]}), "1 strangers"),
    (lambda s: s.catalog[1].update(version=4), "1 ahead of the admin"),
    (lambda s: s.catalog[2].update(version=4), "1 ahead of the admin"),  # a tombstone ahead
    (lambda s: s.admin[1].update(version=2), "acknowledged but not in the admin"),
    (lambda s: s.tombstones.pop(2), "acknowledged but not in the admin"),  # delete lost
    # a double write: an update answered once, applied twice
    (lambda s: (s.admin[1].update(version=4), s.catalog[1].update(version=4)),
     "more writes applied in the admin than were sent"),
    # both unanswered updates happened, and one more
    (lambda s: (s.admin[3].update(version=4), s.catalog[3].update(version=4)),
     "more writes applied in the admin than were sent"),
    (lambda s: (s.tombstones.update({3: 3}), s.admin.pop(3), s.catalog[3].update(
        version=3, deleted=True)), "deleted in the admin without a DELETE"),
    # a product whose id the client never learned (an unanswered create) deleted anyway
    (lambda s: (s.tombstones.update({7: 2}), s.catalog.update(
        {7: {**_admin_product("c5"), "version": 2, "deleted": True}})),
     "deleted in the admin without a DELETE"),
    # one answered create, two products
    (lambda s: (s.admin.update({7: _admin_product("c1")}),
                s.catalog.update({7: {**_admin_product("c1"), "deleted": False}})),
     "creates that made more than one product"),
    # a refused create made one anyway; a product no create made
    (lambda s: (s.admin.update({8: _admin_product("c4")}),
                s.catalog.update({8: {**_admin_product("c4"), "deleted": False}})),
     "admin products no create made"),
    (lambda s: (s.admin.update({8: _admin_product("zz")}),
                s.catalog.update({8: {**_admin_product("zz"), "deleted": False}})),
     "admin products no create made"),
    (lambda s: setattr(s, "outbox_pending", 4), "4 events still in the outbox"),
    (lambda s: setattr(s, "audit_event_ids", set()), "missing from the audit log"),
    (lambda s: s.audit_event_ids.add("e9"), "audit rows for events the admin never recorded"),
    (lambda s: s.dlq["catalog"].remove(POISON_BODY), "catalog DLQ lacks injected poison [0]"),
    (lambda s: s.dlq["audit"].pop(), "audit DLQ lacks injected poison [1]"),
    (lambda s: s.dlq["audit"].append(b"a valid event"), "audit DLQ holds 1 message(s) not"),
    # the mark alone does not make a message the injected poison
    (lambda s: s.dlq["catalog"].append(POISON_BODY + b" "), "catalog DLQ holds 1 message(s)"),
    (lambda s: s.dlq["catalog"].append(chaos.task_body([{**POISON_EVENT, "x": 1}])),
     "catalog DLQ holds 1 message(s)"),
])
def test_the_checker_finds_each_kind_of_damage(change, finding):
    verdict = broken(change)
    assert not verdict.ok
    assert any(finding in reason for reason in verdict.reasons), verdict.reasons


@pytest.mark.parametrize(("outcome", "parked_in", "finding"), [
    ("failed", ("catalog", "audit"), "poison that never reached the broker"),
    ("unknown", ("catalog",), "catalog DLQ holds poison another subscriber's lacks [2]"),
    ("unknown", ("catalog", "audit"), None),   # it did arrive: fine
    ("unknown", (), None),                     # it did not: fine
])
def test_the_checker_judges_poison_by_its_publish_outcome(outcome, parked_in, finding):
    state = copy.deepcopy(GOOD)
    poison = POISON | {2: checker.Poison(outcome, b"poison 2")}
    for name in parked_in:
        state.dlq[name].append(b"poison 2")
    reasons = checker.judge(state, writes=WRITES, creates=CREATES, poison=poison).reasons
    if finding is None:
        assert not reasons
    else:
        assert any(finding in reason for reason in reasons), reasons


def test_the_checker_counts_5xx_and_accepts_copies_of_parked_poison():
    state = copy.deepcopy(GOOD)
    state.dlq["catalog"] *= 3  # a park whose confirm timed out may land twice
    assert checker.judge(state, writes=WRITES, creates=CREATES, poison=POISON).ok
    assert "1 HTTP 5xx answers" in checker.judge(state, writes=WRITES, creates=CREATES,
                                                 poison=POISON, http_5xx=1).reasons


class _SlowBroker(chaos.Nemesis):
    """Faults whose heal outlasts the planned duration (as a broker's start_app can)."""

    def broker_stopped(self, p, h, rnd):
        time.sleep(p.duration + 0.6)

    def memory_alarm(self, p, h, rnd):
        raise RuntimeError("rabbitmqctl exited 64")


def test_faults_on_one_resource_never_overlap_and_a_failed_one_fails_the_run():
    plan = [chaos.Planned(at=0.0, kind="broker stopped", duration=0.3, param=1),
            chaos.Planned(at=0.4, kind="broker memory alarm", duration=0.3, param=2),
            chaos.Planned(at=0.5, kind="broker stopped", duration=0.1, param=3)]
    nemesis = _SlowBroker(stack=None, node=None, plan=plan)
    nemesis.run(threading.Event())
    nemesis.wait_healed(10)
    spans = sorted((h.started, h.healed) for h in nemesis.timeline)
    for (_, healed), (started, _) in itertools.pairwise(spans):
        assert started >= healed, spans
    assert spans[1][0] >= 0.9  # planned at 0.4 s, it waited for the first heal (0.9 s)

    class FakeLoad:
        statuses = {"create 201": 60, "update 200": 30, "delete 204": 10}
        answered_2xx = 100

    problems = chaos.run_problems(nemesis.timeline, FakeLoad, seconds=10, rate=10, achieved=10)
    assert problems == ["1 fault(s) could not be injected: broker memory alarm at "
                        f"{nemesis.timeline[1].started} s: RuntimeError: rabbitmqctl exited 64"]


def test_a_run_without_acknowledged_writes_proves_nothing():
    class NoLoad:
        statuses = {"create error": 600}
        answered_2xx = 0

    problems = chaos.run_problems([], NoLoad, seconds=60, rate=10, achieved=10)
    assert any("only 0 writes acknowledged" in p for p in problems), problems
    assert any("no create, delete, update acknowledged" in p for p in problems), problems
    assert any("reached 2.0 writes/s" in p
               for p in chaos.run_problems([], NoLoad, seconds=60, rate=10, achieved=2))
