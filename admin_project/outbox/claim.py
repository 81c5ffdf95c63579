"""Take pending outbox rows for publishing, and give back the ones that were not sent."""

from __future__ import annotations

from typing import NamedTuple

from .models import TABLE


class ClaimedEvent(NamedTuple):
    """A pending row claimed by this relay. ``payload`` is the envelope's JSON text as stored
    (spliced into the message unparsed)."""

    id: int
    type: str
    product_id: int
    version: int
    event_id: str
    payload: str
    trace_id: str | None

    def ref(self) -> dict:
        """What the message's headers say of this event (``product_events.message``)."""
        return {"type": self.type, "product_id": self.product_id, "version": self.version,
                "event_id": self.event_id}


# Claim and mark in one statement; the caller's transaction stays open until the broker
# confirmed the messages, so a crash or a failed publish rolls the rows back to pending (SKIP
# LOCKED: several relays never claim the same rows). The columns follow ClaimedEvent's fields.
_CLAIM = f"""
UPDATE {TABLE} SET sent_at = now()
WHERE id IN (SELECT id FROM {TABLE} WHERE sent_at IS NULL
             ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING id, type, product_id, version, event_id::text, payload::text, payload->>'trace_id'
"""
_UNSEND = f"UPDATE {TABLE} SET sent_at = NULL WHERE id = ANY(%s)"


def outbox_claim(*, cursor, limit: int) -> list[ClaimedEvent]:
    """Claim up to ``limit`` pending rows, in id order, inside the cursor's transaction."""
    cursor.execute(_CLAIM, [limit])
    return [ClaimedEvent(*row) for row in cursor.fetchall()]


def outbox_unclaim(*, cursor, ids: list[int]) -> None:
    """Return claimed rows to pending (their publish failed or was never tried)."""
    if ids:
        cursor.execute(_UNSEND, [ids])
