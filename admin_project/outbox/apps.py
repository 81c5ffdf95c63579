from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "admin_project.outbox"
    label = "outbox"
    verbose_name = "Outbox"
