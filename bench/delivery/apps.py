from django.apps import AppConfig
from django.conf import settings


class BenchDeliveryConfig(AppConfig):
    name = "bench.delivery"
    label = "bench_delivery"

    def ready(self):
        from admin_project.products import services

        from . import recorders

        services.product_event_record = recorders.RECORDERS[settings.BENCH_EVENT_DELIVERY]
