import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from admin_project.outbox import publish
from harness import amqp
from product_events import contract

PRODUCT_PERMS = ("add_product", "change_product", "delete_product", "view_product")


def _client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def user(db):
    """An editor: holds the product model permissions (DjangoModelPermissions)."""
    user = get_user_model().objects.create_user(username="alice", password="s3cret-pass-1")
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="products", codename__in=PRODUCT_PERMS))
    return user


@pytest.fixture
def api(user):
    return _client(user)


@pytest.fixture
def viewer(db):
    """Logged in, but without any product permission."""
    return get_user_model().objects.create_user(username="bob", password="s3cret-pass-2")


@pytest.fixture
def viewer_api(viewer):
    return _client(viewer)


@pytest.fixture
def anon():
    return APIClient()


def exchange_declare():
    """The products exchange exists (the relay's publisher declares it when it connects)."""
    publisher = publish.Publisher()
    try:
        publisher.producer()
    finally:
        publisher.close()


@pytest.fixture
def bus_queue():
    """Stands in for a consumer: a queue bound to the products exchange for every event."""
    exchange_declare()
    name = f"spy-{uuid.uuid4().hex[:8]}"
    amqp.spy_queue(name, contract.EXCHANGE, contract.ROUTING_PATTERN_ALL)
    yield name
    amqp.queue_delete(name)
