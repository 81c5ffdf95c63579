from django.contrib import admin

from .models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "product_id", "version", "occurred_at", "sent_at"]
    list_filter = ["type", ("sent_at", admin.EmptyFieldListFilter)]
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        """Only sent rows may go (the relay purges them anyway): deleting a pending row would
        mean its event is never published. A bulk delete that selects one is refused whole."""
        if obj is not None and obj.sent_at is None:
            return False
        return super().has_delete_permission(request, obj)
