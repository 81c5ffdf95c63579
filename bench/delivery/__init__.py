"""BENCHMARK ONLY: ways of sending product events that the bench compares the outbox with.

Production code has one path (``admin_project.products.services.product_event_record`` writes
the outbox row). This Django app, installed only by ``bench.admin_settings``, swaps that
function when the admin starts, by ``BENCH_EVENT_DELIVERY``:

* ``off``: record nothing (the "without events" side of the HTTP ratio);
* ``seed-inline``: what the seed project did: pika's ``basic_publish`` inside the request, on a
  new connection per change, with no link to the transaction (an event is lost if the publish
  fails after the commit, and sent for a change that then rolls back).

bench/ is not in the container image (.dockerignore), so no production process can load it."""
