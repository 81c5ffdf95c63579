"""Catalog tasks: thin. Message handling is workers/handling.py's, writes are the catalog
services'."""

from product_events import contract
from workers.catalog import app
from workers.handling import product_events_handle


@app.task(name=contract.TASK_APPLY_PRODUCT_EVENTS, bind=True, acks_late=True,
          max_retries=None, ignore_result=True)
def apply_product_events(self, events=None, **unexpected):
    """Apply a batch of product events to the catalog: idempotent, ordered by version."""
    from catalog_project.catalog.services import product_events_apply

    return product_events_handle(self, events, unexpected, apply=product_events_apply)
