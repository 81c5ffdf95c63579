"""The catalog's Celery workers: ``celery -A workers.catalog worker``."""
