"""The one checker of a fault run (`make chaos`, and any scenario that keeps a record of its
acknowledged writes): it reads both databases and the dead-letter queues directly (not through
the project's own `reconcile`, whose correctness is under test too) and says what was lost,
stale, resurrected, invented or wrongly parked.

    state = checker.collect(stack)                  # databases + DLQs, read-only
    verdict = checker.judge(state, writes=..., creates=..., poison=..., http_5xx=...)
    verdict.ok, verdict.reasons, verdict.as_dict()

What it is given is the client's side of the story: every write it sent and what came back
(an answer, or none: a timeout or a lost connection leaves the outcome unknown). A write that
was answered must have happened exactly once; one that was not may have happened at most once.
So the admin's state is checked too (a create that made two products, an update applied twice,
a delete nobody sent), not only the catalog against the admin.

``judge`` is a pure function of what it is given (tests/faults/test_chaos.py feeds it broken
states: it must find each).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from decimal import Decimal

from harness import amqp

CONTENT = ("title", "image", "price", "description")
DLQS = {"catalog": "catalog.products.dlq", "audit": "audit.products.dlq"}


@dataclass
class Write:
    """The client's record of one product it created: the highest version a 2xx answer gave;
    the updates answered 2xx and those left unanswered; its DELETE answered 204 (``deleted``)
    or sent and left unanswered (``delete_unanswered``). The admin versions a product 1 at its
    create and +1 per update or delete, so its final version lies between what was answered and
    what was answered plus what was not."""

    version: int = 0
    deleted: bool = False
    updates: int = 0
    unanswered: int = 0
    delete_unanswered: bool = False


@dataclass
class Poison:
    """One injected poison message: its exact body, and (for poison inside a well-formed task
    message, parked alone as a new message) the exact event; ``outcome`` of its publish:
    "confirmed" (the broker took it), "failed" (it never reached the broker) or "unknown" (sent,
    no confirm: it may have arrived)."""

    outcome: str
    body: bytes = b""
    event: dict | None = None

    def matches(self, parked: bytes) -> bool:
        if parked == self.body:
            return True
        if self.event is None:
            return False
        try:
            _, kwargs, _ = json.loads(parked)
            return kwargs["events"] == [self.event]
        except (ValueError, TypeError, KeyError):
            return False


@dataclass
class State:
    admin: dict[int, dict]          # live products: id -> {version, title, image, price, ...}
    tombstones: dict[int, int]      # deleted products: id -> final version
    catalog: dict[int, dict]        # every catalog row: id -> {version, deleted, content...}
    outbox_pending: int             # events neither sent nor set aside
    set_aside: int                  # events the relay set aside
    sent_event_ids: set[str]        # outbox event ids sent (the audit log must hold each)
    audit_event_ids: set[str]
    dlq: dict[str, list[bytes]]     # subscriber -> bodies of its parked messages
    outbox_event_ids: set[str] = field(default_factory=set)  # every event the admin recorded


@dataclass
class Verdict:
    products: int = 0
    acknowledged_writes: int = 0
    lost: list[int] = field(default_factory=list)          # an acked write not in the catalog
    stale: list[int] = field(default_factory=list)         # catalog behind or different
    resurrected: list[int] = field(default_factory=list)   # deleted, still visible
    strangers: list[int] = field(default_factory=list)     # in the catalog, never in the admin
    ahead: list[int] = field(default_factory=list)         # catalog above the admin's version
    admin_behind: list[int] = field(default_factory=list)  # an acked write the admin lacks
    applied_twice: list[int] = field(default_factory=list)  # admin above what was sent
    deleted_unasked: list[int] = field(default_factory=list)  # deleted, no DELETE sent
    created_twice: list[str] = field(default_factory=list)  # one create, two products
    invented: list[int] = field(default_factory=list)      # admin products no create made
    audit_missing: int = 0
    audit_strangers: int = 0        # audit rows for events the admin never recorded
    outbox_pending: int = 0
    set_aside: int = 0
    http_5xx: int = 0
    parked: dict[str, dict] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def converged(self) -> bool:
        """The replicas agree (what a run waits for before it judges the rest)."""
        return not (self.lost or self.stale or self.resurrected or self.outbox_pending
                    or self.audit_missing)

    def as_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok}


def _norm(row: dict) -> tuple:
    return tuple(str(Decimal(row[k]).quantize(Decimal("0.01"))) if k == "price"
                 else (row[k] or "") for k in CONTENT)


def collect(stack) -> State:
    """Read the admin and catalog databases and both DLQs (nothing is changed or removed)."""
    cols = ", ".join(CONTENT)
    admin = {r[0]: dict(zip(("version", *CONTENT), r[1:], strict=True)) for r in stack.sql(
        "admin", f"SELECT id, version, {cols} FROM products_product")}
    tombstones = dict(stack.sql("admin",
                                "SELECT product_id, version FROM products_producttombstone"))
    catalog = {r[0]: dict(zip(("version", "deleted", *CONTENT), r[1:], strict=True))
               for r in stack.sql("catalog", f"SELECT id, version, deleted, {cols} "
                                             "FROM catalog_product")}
    ((pending, set_aside),) = stack.sql(
        "admin", "SELECT count(*) FILTER (WHERE sent_at IS NULL AND set_aside_at IS NULL), "
                 "count(*) FILTER (WHERE set_aside_at IS NOT NULL) FROM products_outboxevent")
    events = stack.sql("admin", "SELECT event_id, sent_at IS NOT NULL FROM products_outboxevent")
    audit = {str(r[0]) for r in stack.sql("catalog",
                                          "SELECT event_id FROM audit_productchange")}
    return State(admin=admin, tombstones=tombstones, catalog=catalog, outbox_pending=pending,
                 set_aside=set_aside, sent_event_ids={str(e) for e, sent in events if sent},
                 audit_event_ids=audit, outbox_event_ids={str(e) for e, _ in events},
                 dlq={name: dlq_bodies(stack.env["CELERY_BROKER_URL"], queue)
                      for name, queue in DLQS.items()})


def dlq_bodies(url: str, queue: str) -> list[bytes]:
    """Every body in ``queue``, read unacked (the channel's close returns them all)."""
    with amqp.broker_connection_to(url) as conn:
        channel = conn.channel()
        out = []
        while (raw := channel.basic_get(queue, no_ack=False)) is not None:
            body = raw.body  # py-amqp hands a text body as str
            out.append(body.encode("utf-8", "surrogateescape") if isinstance(body, str)
                       else bytes(body))
        channel.close()
        return out


def judge(state: State, *, writes: dict[int, Write], poison: dict[int, Poison],
          creates: dict[str, str] | None = None, http_5xx: int = 0,
          audit: bool = True) -> Verdict:
    """``writes``: the client's record per product it knows the id of. ``creates``: every
    create sent, by the ``description`` it carried (unique per create) -> "answered" (201),
    "unanswered" (no answer: it may have made one product) or "refused" (a 4xx: it made
    none); None skips the admin-side checks of creates. ``poison``: the injected poison by
    number. Every subscriber's DLQ must hold each confirmed poison, none that failed, nothing
    else, and the same poison as every other subscriber's (a message reaches all queues or
    none); copies of one are fine (a park whose confirm timed out may land twice)."""
    v = Verdict(products=len(state.admin) + len(state.tombstones),
                acknowledged_writes=len(writes), outbox_pending=state.outbox_pending,
                set_aside=state.set_aside, http_5xx=http_5xx)
    _judge_admin(state, writes, creates, v)
    _judge_catalog(state, writes, v)
    if audit:
        v.audit_missing = len(state.sent_event_ids - state.audit_event_ids)
        v.audit_strangers = len(state.audit_event_ids - state.outbox_event_ids)
    _judge_dlqs(state, poison, v)
    for label, ids in (("lost", v.lost), ("stale", v.stale), ("resurrected", v.resurrected),
                       ("strangers in the catalog", v.strangers),
                       ("ahead of the admin in the catalog", v.ahead),
                       ("acknowledged but not in the admin", v.admin_behind),
                       ("with more writes applied in the admin than were sent",
                        v.applied_twice),
                       ("deleted in the admin without a DELETE", v.deleted_unasked),
                       ("creates that made more than one product", v.created_twice),
                       ("admin products no create made", v.invented)):
        if ids:
            v.reasons.append(f"{len(ids)} {label}: {sorted(ids)[:10]}")
    if v.audit_missing:
        v.reasons.append(f"{v.audit_missing} sent events missing from the audit log")
    if v.audit_strangers:
        v.reasons.append(f"{v.audit_strangers} audit rows for events the admin never recorded")
    if v.outbox_pending:
        v.reasons.append(f"{v.outbox_pending} events still in the outbox")
    if v.set_aside:
        v.reasons.append(f"{v.set_aside} events set aside by the relay")
    if http_5xx:
        v.reasons.append(f"{http_5xx} HTTP 5xx answers")
    return v


def _judge_admin(state: State, writes: dict[int, Write], creates: dict[str, str] | None,
                 v: Verdict) -> None:
    """The admin did what it answered, once, and nothing it was not asked."""
    for pid, w in sorted(writes.items()):
        deleted = pid in state.tombstones
        final = state.tombstones.get(pid) if deleted else state.admin.get(pid, {}).get("version")
        if final is None or final < w.version or (w.deleted and not deleted) \
                or final < 1 + w.updates + w.deleted:
            v.admin_behind.append(pid)
            continue
        if deleted and not (w.deleted or w.delete_unanswered):
            v.deleted_unasked.append(pid)
        elif final > 1 + w.updates + w.unanswered + deleted:
            v.applied_twice.append(pid)
    # the client deletes only products whose create it saw answered (it knows no other id): a
    # tombstone for any other id is a DELETE it never sent (a retried request, a wrong id)
    v.deleted_unasked.extend(sorted(set(state.tombstones) - set(writes)))
    if creates is None:
        return
    made = Counter(row["description"] for row in state.admin.values())
    for marker, n in made.items():
        outcome = creates.get(marker)
        if outcome is None or outcome == "refused":
            v.invented.extend(pid for pid, row in state.admin.items()
                              if row["description"] == marker)
        elif n > 1:
            v.created_twice.append(marker)
    # (a deleted product has no row left to count: a tombstone of an id the client never got
    # back is a delete nobody sent, found above)


def _judge_catalog(state: State, writes: dict[int, Write], v: Verdict) -> None:
    """The catalog holds every product at the admin's final version and content, deletions
    as deletions, and nothing else."""
    for pid, w in sorted(writes.items()):
        row = state.catalog.get(pid)
        if row is None or row["version"] < w.version:
            v.lost.append(pid)
    for pid, live in state.admin.items():
        row = state.catalog.get(pid)
        if pid in v.lost:
            continue
        if row is None:
            v.lost.append(pid)
        elif row["version"] > live["version"]:
            v.ahead.append(pid)
        elif row["deleted"] or row["version"] != live["version"] or _norm(row) != _norm(live):
            v.stale.append(pid)
    for pid, version in state.tombstones.items():
        row = state.catalog.get(pid)
        if row is not None and not row["deleted"]:
            v.resurrected.append(pid)
        elif row is not None and row["version"] > version:
            v.ahead.append(pid)
        elif (row is None or row["version"] < version) and pid not in v.lost:
            v.lost.append(pid)
    v.strangers = sorted(set(state.catalog) - set(state.admin) - set(state.tombstones))


def _judge_dlqs(state: State, poison: dict[int, Poison], v: Verdict) -> None:
    found_by: dict[str, set[int]] = {}
    for name, bodies in state.dlq.items():
        found, unmatched = set(), 0
        for body in bodies:
            n = next((n for n, p in poison.items() if p.matches(body)), None)
            if n is None:
                unmatched += 1
            else:
                found.add(n)
        found_by[name] = found
        confirmed = {n for n, p in poison.items() if p.outcome == "confirmed"}
        failed = {n for n, p in poison.items() if p.outcome == "failed"}
        p = v.parked[name] = {
            "messages": len(bodies), "distinct_poison": len(found), "unmarked": unmatched,
            "missing": sorted(confirmed - found), "failed_but_parked": sorted(found & failed)}
        if unmatched:
            v.reasons.append(f"{name} DLQ holds {unmatched} message(s) not injected as poison")
        if p["missing"]:
            v.reasons.append(f"{name} DLQ lacks injected poison {p['missing'][:10]}")
        if p["failed_but_parked"]:
            v.reasons.append(f"{name} DLQ holds poison that never reached the broker "
                             f"{p['failed_but_parked'][:10]}")
    if len(found_by) > 1:
        everywhere = set.intersection(*found_by.values())
        for name, found in found_by.items():
            if found - everywhere:
                v.reasons.append(f"{name} DLQ holds poison another subscriber's lacks "
                                 f"{sorted(found - everywhere)[:10]}")
