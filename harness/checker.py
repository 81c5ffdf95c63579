"""The one checker of a fault run (`make chaos`, and any scenario that keeps a record of its
acknowledged writes): it reads both databases and the dead-letter queues directly (not through
the project's own `reconcile`, whose correctness is under test too) and says what was lost,
stale, resurrected, invented or wrongly parked.

    state = checker.collect(stack)                  # databases + DLQs, read-only
    verdict = checker.judge(state, writes=..., poison=..., http_5xx=...)
    verdict.ok, verdict.reasons, verdict.as_dict()

``judge`` is a pure function of what it is given (tests/faults/test_checker.py feeds it broken
states: it must find each).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal

from harness import amqp

CONTENT = ("title", "image", "price", "description")
POISON_MARK = re.compile(rb"chaos-poison-(\d+)")
DLQS = {"catalog": "catalog.products.dlq", "audit": "audit.products.dlq"}


@dataclass
class Write:
    """What the admin acknowledged for one product (the highest version a 2xx answer gave;
    ``deleted`` once a DELETE was answered 204)."""

    version: int = 0
    deleted: bool = False


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


@dataclass
class Verdict:
    products: int = 0
    acknowledged_writes: int = 0
    lost: list[int] = field(default_factory=list)          # an acked write not in the catalog
    stale: list[int] = field(default_factory=list)         # catalog behind or different
    resurrected: list[int] = field(default_factory=list)   # deleted, still visible
    strangers: list[int] = field(default_factory=list)     # in the catalog, never in the admin
    admin_behind: list[int] = field(default_factory=list)  # an acked write the admin lacks
    audit_missing: int = 0
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
    sent = {str(r[0]) for r in stack.sql(
        "admin", "SELECT event_id FROM products_outboxevent WHERE sent_at IS NOT NULL")}
    audit = {str(r[0]) for r in stack.sql("catalog",
                                          "SELECT event_id FROM audit_productchange")}
    return State(admin=admin, tombstones=tombstones, catalog=catalog, outbox_pending=pending,
                 set_aside=set_aside, sent_event_ids=sent, audit_event_ids=audit,
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


def judge(state: State, *, writes: dict[int, Write], poison: dict[int, str],
          http_5xx: int = 0, audit: bool = True) -> Verdict:
    """``writes``: the acknowledged HTTP writes per product. ``poison``: the injected poison
    messages by number (``chaos-poison-<n>`` in their bodies) -> "confirmed" (the broker took
    it), "failed" (it never reached the broker) or "unknown" (a publish that timed out: it may
    arrive). Every subscriber's DLQ must hold each confirmed one, none that failed, nothing
    else (copies of one are fine: a park whose confirm timed out may land twice)."""
    v = Verdict(products=len(state.admin) + len(state.tombstones),
                acknowledged_writes=len(writes), outbox_pending=state.outbox_pending,
                set_aside=state.set_aside, http_5xx=http_5xx)
    for pid, w in sorted(writes.items()):
        final = state.tombstones.get(pid) if w.deleted else state.admin.get(pid, {}).get("version")
        if final is None or final < w.version:
            v.admin_behind.append(pid)
        row = state.catalog.get(pid)
        if row is None or row["version"] < w.version:
            v.lost.append(pid)
    for pid, live in state.admin.items():
        row = state.catalog.get(pid)
        if row is not None and pid not in v.lost and (
                row["deleted"] or row["version"] != live["version"]
                or _norm(row) != _norm(live)):
            v.stale.append(pid)
        elif row is None and pid not in v.lost:
            v.lost.append(pid)
    for pid, version in state.tombstones.items():
        row = state.catalog.get(pid)
        if row is not None and not row["deleted"]:
            v.resurrected.append(pid)
        elif (row is None or row["version"] < version) and pid not in v.lost:
            v.lost.append(pid)
    v.strangers = sorted(set(state.catalog) - set(state.admin) - set(state.tombstones))
    if audit:
        v.audit_missing = len(state.sent_event_ids - state.audit_event_ids)
    for name, bodies in state.dlq.items():
        marks = [POISON_MARK.search(b) for b in bodies]
        found = {int(m.group(1)) for m in marks if m}
        unmarked = sum(1 for m in marks if not m)
        confirmed = {n for n, outcome in poison.items() if outcome == "confirmed"}
        failed = {n for n, outcome in poison.items() if outcome == "failed"}
        v.parked[name] = {
            "messages": len(bodies), "distinct_poison": len(found),
            "unmarked": unmarked, "missing": sorted(confirmed - found),
            "unexpected": sorted(found - set(poison)),
            "failed_but_parked": sorted(found & failed)}
        p = v.parked[name]
        if unmarked:
            v.reasons.append(f"{name} DLQ holds {unmarked} message(s) not injected as poison")
        if p["missing"]:
            v.reasons.append(f"{name} DLQ lacks injected poison {p['missing'][:10]}")
        if p["unexpected"] or p["failed_but_parked"]:
            v.reasons.append(f"{name} DLQ holds poison never (successfully) injected "
                             f"{(p['unexpected'] + p['failed_but_parked'])[:10]}")
    for label, ids in (("lost", v.lost), ("stale", v.stale), ("resurrected", v.resurrected),
                       ("strangers in the catalog", v.strangers),
                       ("acknowledged but not in the admin", v.admin_behind)):
        if ids:
            v.reasons.append(f"{len(ids)} {label}: {sorted(ids)[:10]}")
    if v.audit_missing:
        v.reasons.append(f"{v.audit_missing} sent events missing from the audit log")
    if v.outbox_pending:
        v.reasons.append(f"{v.outbox_pending} events still in the outbox")
    if v.set_aside:
        v.reasons.append(f"{v.set_aside} events set aside by the relay")
    if http_5xx:
        v.reasons.append(f"{http_5xx} HTTP 5xx answers")
    return v
