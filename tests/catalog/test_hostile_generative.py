"""No 5xx from the catalog, whatever the request (issue 12, "close the class"): hypothesis builds
hostile requests (harness/hostile.py: Unicode digits, huge, negative and repeated query values,
unknown parameters, ids that are no ids, deep, large and non-JSON bodies under every content
type) for every operation of the OpenAPI schema and the pages outside it, anonymously and with a
token that means nothing, against stored products, versions and audit records.
GENERATIVE_EXAMPLES sets the number of requests per operation."""

import os

import pytest
from drf_spectacular.generators import SchemaGenerator

from catalog_project.audit.services import product_changes_record
from catalog_project.catalog.services import product_events_apply
from harness import hostile
from product_events.contract import envelope_validate
from tests.catalog.events import event

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("GENERATIVE_EXAMPLES", "50"))  # per operation
OUTSIDE_THE_SCHEMA = ["/healthz", "/readyz", "/metrics", "/api/", "/api/docs/", "/admin/",
                      "/nope/"]
OPERATIONS = hostile.operations(SchemaGenerator().get_schema(request=None, public=True),
                                OUTSIDE_THE_SCHEMA)


@pytest.fixture
def stored():
    events = [envelope_validate(event(i, v)) for i in (1, 2, 3) for v in (1, 2)]
    product_events_apply(events=events)
    product_changes_record(events=events)
    return [1, 2, 3]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op[0]} {op[1]}")
def test_no_request_gets_a_5xx(operation, stored):
    clients = {"anonymous": hostile.guarded_client(raise_request_exception=False),
               "bogus token": hostile.guarded_client(raise_request_exception=False,
                                     HTTP_AUTHORIZATION="Token ²" + "x" * 5000)}

    hostile.assert_no_5xx(operation, clients, stored, EXAMPLES)
