"""Audit tasks: thin. Same wire contract as the catalog's, another write."""

from product_events import contract
from workers.audit import app


# The task name is the wire contract's, not a name of the catalog: every message on the product
# bus asks for ``catalog.apply_product_events(events=[...])``, whoever consumes it. Each
# subscriber registers its own function under that one name in its own app.
@app.task(name=contract.TASK_APPLY_PRODUCT_EVENTS, bind=True, shared=False)
def record_product_events(self, events=None, **unexpected):
    """Append the events to the audit log (once per event id)."""
    from catalog_project.audit.services import product_changes_record

    return self.handle(events, unexpected, apply=product_changes_record)
