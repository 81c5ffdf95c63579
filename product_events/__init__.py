"""The product event contract shared by the admin (producer) and every consumer.

This package is the only code both sides import. It holds names that cross process
boundaries (task name, exchange, routing keys, queue names) and the JSON envelope.
See docs/events.md for the same contract in language-neutral terms.
"""
