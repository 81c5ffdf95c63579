from django import forms
from django.contrib import admin
from django.db import models
from django.http import Http404

from . import services
from .models import Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    """The Django admin writes through the same services as the API, so it emits the same events."""

    list_display = ["id", "title", "price", "version", "updated_at"]
    search_fields = ["title"]
    readonly_fields = ["version", "created_at", "updated_at"]
    formfield_overrides = {models.URLField: {"form_class": forms.URLField,
                                             "assume_scheme": "https"}}

    def save_model(self, request, obj, form, change):
        cleaned = form.cleaned_data
        data = {f: cleaned[f] for f in services.UPDATABLE_FIELDS if f in cleaned}
        if change:
            try:
                saved = services.product_update(product_id=obj.pk, data=data)
            except Product.DoesNotExist:  # deleted by someone else meanwhile
                raise Http404("This product was deleted meanwhile.") from None
        else:
            saved = services.product_create(**data)
        obj.pk, obj.version, obj.updated_at = saved.pk, saved.version, saved.updated_at

    def delete_model(self, request, obj):
        try:
            services.product_delete(product_id=obj.pk)
        except Product.DoesNotExist:
            pass  # deleted by someone else meanwhile: what was asked for holds

    def delete_queryset(self, request, queryset):
        for product_id in queryset.values_list("pk", flat=True):
            self.delete_model(request, Product(pk=product_id))


# --- API tokens: a token is a password; the admin shows who has one, never the key itself ---
from rest_framework.authtoken.admin import TokenAdmin  # noqa: E402
from rest_framework.authtoken.models import TokenProxy  # noqa: E402

admin.site.unregister(TokenProxy)
# the admin names an object by str() in titles, breadcrumbs and the delete page; DRF's is the key
TokenProxy.__str__ = lambda self: f"API token of {self.user}"


@admin.register(TokenProxy)
class HiddenKeyTokenAdmin(TokenAdmin):
    list_display = ("key_hint", "user", "created")

    @admin.display(description="key")
    def key_hint(self, obj) -> str:
        return f"{obj.key[:4]}…"  # enough to tell two apart, not to use one
