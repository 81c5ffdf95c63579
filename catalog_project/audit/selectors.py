from django.db.models import QuerySet

from .models import ProductChange


def product_changes_list(*, product_id: int | None = None) -> QuerySet[ProductChange]:
    qs = ProductChange.objects.order_by("product_id", "version", "id")
    return qs if product_id is None else qs.filter(product_id=product_id)
