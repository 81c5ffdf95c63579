"""The admin service: products are written here (HTTP API and Django admin)."""
