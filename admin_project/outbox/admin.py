from django.contrib import admin, messages

from .models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "product_id", "version", "occurred_at", "sent_at", "size",
                    "set_aside_at"]
    list_filter = ["type", ("sent_at", admin.EmptyFieldListFilter),
                   ("set_aside_at", admin.EmptyFieldListFilter)]
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    actions = ["return_to_pending"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        """Only sent rows may go (the relay purges them anyway): deleting a pending or set-aside
        row would mean its event is never published. A bulk delete selecting one is refused."""
        if obj is not None and obj.sent_at is None:
            return False
        return super().has_delete_permission(request, obj)

    def has_release_permission(self, request):
        return request.user.has_perm("outbox.change_outboxevent")

    @admin.action(description="Return set-aside events to pending (publish them again)",
                  permissions=["release"])
    def return_to_pending(self, request, queryset):
        n = queryset.filter(set_aside_at__isnull=False).update(set_aside_at=None,
                                                               set_aside_reason="")
        self.message_user(request, f"{n} set-aside event(s) returned to pending; the relay "
                                   "publishes them or sets them aside again.", messages.SUCCESS)
