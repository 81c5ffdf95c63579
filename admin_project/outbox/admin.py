from django.contrib import admin, messages

from .models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    """Read-only for everyone: no add, change or delete. The one write is the action that
    returns set-aside events to pending (it needs ``outbox.change_outboxevent``)."""

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
        """Nobody deletes outbox rows here, superusers included: a pending or set-aside row
        deleted would be an event never published, and the relay purges sent rows itself
        (``ADMIN_OUTBOX_RETENTION_HOURS``). The bulk "delete selected" action is gone too."""
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_release_permission(self, request):
        return request.user.has_perm("outbox.change_outboxevent")

    @admin.action(description="Return set-aside events to pending (publish them again)",
                  permissions=["release"])
    def return_to_pending(self, request, queryset):
        n = queryset.filter(set_aside_at__isnull=False).update(set_aside_at=None,
                                                               set_aside_reason="")
        self.message_user(request, f"{n} set-aside event(s) returned to pending; the relay "
                                   "publishes them or sets them aside again.", messages.SUCCESS)
