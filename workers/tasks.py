"""Catalog tasks: thin. Message handling is the task base class's (workers/handling.py), writes
are the catalog services'."""

from product_events import contract
from workers.catalog import app


@app.task(name=contract.TASK_APPLY_PRODUCT_EVENTS, bind=True, shared=False)
def apply_product_events(self, events=None, **unexpected):
    """Apply a batch of product events to the catalog: idempotent, ordered by version."""
    from catalog_project.catalog.services import product_events_apply

    return self.handle(events, unexpected, apply=product_events_apply)
