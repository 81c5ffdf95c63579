"""No 5xx from the admin, whatever the request (issue 12, "close the class"): hypothesis builds
hostile requests (harness/hostile.py) for every operation of the OpenAPI schema and for the pages
outside it (Django admin, login, probes), as an editor, as a superuser, and anonymously.
GENERATIVE_EXAMPLES sets the number of requests (`make faults` runs more)."""

import os
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import TokenProxy

from admin_project.outbox.models import OutboxEvent
from admin_project.products import services
from admin_project.products.models import Product, ProductTombstone
from harness import hostile

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("GENERATIVE_EXAMPLES", "50"))  # per operation
OUTSIDE_THE_SCHEMA = [
    "/admin/login/", "/admin/", "/admin/products/product/{id}/change/",
    "/admin/products/product/{id}/delete/", "/admin/products/product/add/",
    "/admin/outbox/outboxevent/{id}/change/", "/admin/auth/user/{id}/change/",
    "/healthz", "/readyz", "/metrics", "/api/", "/api/docs/", "/nope/",
    # changelists: their filters are any field__lookup of the model, from the query string
    *[(path, hostile.lookup_params(model)) for path, model in [
        ("/admin/products/product/", Product), ("/admin/outbox/outboxevent/", OutboxEvent),
        ("/admin/auth/user/", get_user_model()), ("/admin/authtoken/tokenproxy/", TokenProxy),
        ("/admin/products/producttombstone/", ProductTombstone)]],
]


OPERATIONS = hostile.operations(SchemaGenerator().get_schema(request=None, public=True),
                               OUTSIDE_THE_SCHEMA)


@pytest.fixture
def clients(api, user):
    su = get_user_model().objects.create_superuser(username="root", password="r00t-pass-1")
    staff = hostile.guarded_client(raise_request_exception=False)
    staff.force_login(su)
    editor = hostile.guarded_client(raise_request_exception=False,
                    HTTP_AUTHORIZATION=api._credentials["HTTP_AUTHORIZATION"])
    ids = [services.product_create(title=f"p{i}", price=Decimal("1.00")).pk for i in range(3)]
    return {"editor": editor, "staff": staff,
            "anonymous": hostile.guarded_client(raise_request_exception=False)}, ids


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op[0]} {op[1]}")
def test_no_request_gets_a_5xx(operation, clients):
    by_role, ids = clients

    hostile.assert_no_5xx(operation, by_role, ids, EXAMPLES)

