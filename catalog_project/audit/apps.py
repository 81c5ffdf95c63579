from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The second subscriber of the product bus: an append-only log of product changes
    (docs/extending.md). Its worker is ``celery -A workers.audit worker``."""

    name = "catalog_project.audit"
    label = "audit"
    default_auto_field = "django.db.models.BigAutoField"
