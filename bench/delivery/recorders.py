"""The compared recorders, with the signature of ``services.product_event_record``."""

import json

import pika
from django.conf import settings

from admin_project.products.services import product_snapshot
from product_events import contract

SEED_QUEUE = "bench.seed"


def record_nothing(*, product, event_type: str) -> None:
    return None


def seed_publish(*, product, event_type: str) -> None:
    envelope = contract.envelope_build(
        event_type=event_type, product_id=product.pk, version=product.version,
        occurred_at=product.updated_at, data=product_snapshot(product=product))
    connection = pika.BlockingConnection(pika.URLParameters(settings.CELERY_BROKER_URL))
    try:
        channel = connection.channel()
        channel.basic_publish(exchange="", routing_key=SEED_QUEUE, body=json.dumps(envelope))
    finally:
        connection.close()


RECORDERS = {"off": record_nothing, "seed-inline": seed_publish}
