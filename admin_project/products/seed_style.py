"""BENCHMARK ONLY: the seed project's way of sending events, kept to measure against.

The seed called pika's ``basic_publish`` inside the view, on a new connection per message, with
no transaction link: an event is lost if the publish fails after the commit, and sent for a
change that then rolls back. Enabled only by ADMIN_EVENT_DELIVERY=seed-inline."""

import json

import pika
from django.conf import settings

SEED_QUEUE = "bench.seed"


def seed_publish(envelope: dict) -> None:
    params = pika.URLParameters(settings.CELERY_BROKER_URL)
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.basic_publish(exchange="", routing_key=SEED_QUEUE, body=json.dumps(envelope))
    finally:
        connection.close()
