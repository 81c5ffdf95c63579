"""The transactional outbox of product events (a Django app of the admin project).

One room, one job each:

* ``models``: the table (``OutboxEvent``).
* ``record``: write events in the change's transaction, wake the relay on commit (NOTIFY);
  purge rows sent long ago.
* ``claim``: take pending rows for publishing (``ClaimedEvent``), and give back unsent ones.
* ``publish``: the broker connection and one claim-publish-commit cycle.
* ``listen``: the LISTEN connection that wakes the relay.
* ``loop``: the relay process (``manage.py relay``): wake, publish, back off, heartbeat.
* ``metrics``: the backlog gauges of the admin's ``/metrics`` (the relay's own counters are in
  ``publish`` and ``loop``).

It knows the wire contract (``product_events``) and nothing of products: callers hand it
``(type, product_id, version, occurred_at, data)`` items."""
