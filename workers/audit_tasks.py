"""Audit tasks: thin. Same wire contract (task name, kwargs) as the catalog's, another write."""

from product_events import contract
from workers.audit import app
from workers.handling import product_events_handle


@app.task(name=contract.TASK_APPLY_PRODUCT_EVENTS, bind=True, acks_late=True,
          max_retries=None, ignore_result=True)
def record_product_events(self, events=None, **unexpected):
    """Append the events to the audit log (once per event id)."""
    from catalog_project.audit.services import product_changes_record

    return product_events_handle(self, events, unexpected, apply=product_changes_record)
