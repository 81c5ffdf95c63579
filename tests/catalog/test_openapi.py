"""The catalog's read API against its own OpenAPI schema (schemathesis): no 5xx, and every
response is one the schema documents."""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from catalog_project.catalog.services import product_events_apply
from product_events.contract import envelope_validate
from tests.catalog.events import event

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture(autouse=True)
def keep_test_connection():
    """The WSGI handler would close the test's DB connection after each request."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def some_products(db):
    product_events_apply(events=[envelope_validate(event(i, 1)) for i in (1, 2, 3)])


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=50, deadline=None, derandomize=True,  # same cases every run (CI)
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_catalog_api_conforms_to_its_schema(case, some_products):
    case.call_and_validate()
