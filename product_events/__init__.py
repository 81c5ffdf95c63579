"""The product event contract shared by the admin (producer) and every consumer.

This package is the only code both sides import. It holds names that cross process
boundaries (task name, exchange, routing keys), the JSON envelope (``contract``) and the
message that carries it (``message``). Each subscriber's own queues are its own business
(catalog_project/topology.py).
See docs/events.md for the same contract in language-neutral terms.
"""
