"""Runs the system's real processes for tests/ and bench/: private RabbitMQ vhosts, fresh
PostgreSQL databases, free ports, each Procfile process started on its own (``stack``), and
small broker and database helpers. No mocks: everything here talks to the real services."""
