from django.apps import AppConfig


class ProductsConfig(AppConfig):
    name = "admin_project.products"
    label = "products"
    default_auto_field = "django.db.models.BigAutoField"
