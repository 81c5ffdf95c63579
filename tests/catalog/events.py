"""Build valid product events for tests (the same contract the admin uses)."""

import uuid
from datetime import UTC, datetime, timedelta

from product_events import contract

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(product_id: int, version: int, *, type_: str | None = None, title: str | None = None,
          price: str = "1.00") -> dict:
    type_ = type_ or (contract.PRODUCT_CREATED if version == 1 else contract.PRODUCT_UPDATED)
    at = T0 + timedelta(seconds=version)
    return contract.envelope_build(
        event_type=type_, product_id=product_id, version=version, occurred_at=at,
        event_id=str(uuid.uuid4()),
        data={"id": product_id, "title": title or f"p{product_id} v{version}", "image": "",
              "price": price, "description": "", "version": version,
              "created_at": T0.isoformat(), "updated_at": at.isoformat()},
    )


def parsed(*events: dict):
    return [contract.envelope_validate(e) for e in events]
