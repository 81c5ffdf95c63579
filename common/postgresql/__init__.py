"""Django's PostgreSQL backend with a client-side answer deadline (see ``base``)."""
