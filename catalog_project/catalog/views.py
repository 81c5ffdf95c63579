from django.conf import settings
from django.db import OperationalError
from drf_spectacular.utils import extend_schema
from psycopg2.errors import QueryCanceled
from rest_framework import mixins, viewsets
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import APIView

from common.errors import DatabaseRetryMixin
from common.pagination import KeysetJSONListMixin
from common.throttling import AnonRateThrottle, ScopedRateThrottle

from . import selectors
from .serializers import (
    DigestQuerySerializer,
    DigestRowsQuerySerializer,
    DigestRowsSerializer,
    DigestSerializer,
    ProductSerializer,
    ProductVersionSerializer,
)


# KeysetJSONListMixin: cursor pages in JSON written from the rows' columns, without model
# instances or the serializer (the same bytes; common.pagination)
class ProductViewSet(DatabaseRetryMixin, KeysetJSONListMixin, viewsets.ReadOnlyModelViewSet):
    """The catalog's products: read-only, no login needed. Deleted products are 404."""

    serializer_class = ProductSerializer
    lookup_value_regex = r"[0-9]{1,19}"
    cursor_ordering = "id"  # ?cursor=: keyset pages (common.pagination)

    def get_queryset(self):
        return selectors.product_list()


class ProductVersionViewSet(DatabaseRetryMixin, KeysetJSONListMixin, mixins.ListModelMixin,
                            viewsets.GenericViewSet):
    """The version of every product id the catalog holds, deleted ones included (their data
    stays hidden). What the admin's `restore_fence` compares a restored admin database with:
    ids and versions the subscribers saw that the backup does not know."""

    serializer_class = ProductVersionSerializer
    cursor_ordering = "id"  # ?cursor=: keyset pages (common.pagination)

    def get_queryset(self):
        return selectors.product_versions_list()


class DigestsBusy(APIException):
    # 429, not 503: a busy answer is no server error (nothing for the error log or a 5xx alert)
    status_code = 429
    default_detail = "another digest is being computed: try again after Retry-After seconds"
    default_code = "digests_busy"
    wait = 1  # DRF answers it as Retry-After


class _DigestThrottled(DatabaseRetryMixin, APIView):
    """Each request reads a range of rows (at most ``digest.MAX_DIGEST_ROWS``): its own rate per
    client on top of the API's (``CATALOG_THROTTLE_DIGESTS``); at most
    ``CATALOG_DIGESTS_AT_ONCE`` computed at a time across all web processes, the others answered
    429 with Retry-After at once (anyone may call them: they never hold every web worker); and a
    range the database cannot digest within the statement timeout is a 400 with code
    ``range_too_costly`` (ask for fewer rows), not a 500."""

    throttle_scope = "digests"
    throttle_classes = [AnonRateThrottle, ScopedRateThrottle]

    def computed(self, compute):
        with selectors.digest_slot(settings.DIGESTS_AT_ONCE) as got:
            if not got:
                raise DigestsBusy()
            return compute()

    def handle_exception(self, exc):
        # the statement timeout (a disconnect is not: that one runs again, or answers 503)
        if isinstance(exc, OperationalError) and isinstance(exc.__cause__, QueryCanceled):
            return Response({"detail": "this range cannot be digested within the statement "
                                       "timeout: ask for a smaller range (fewer max_rows)",
                             "code": "range_too_costly"}, status=400)
        return super().handle_exception(exc)


class ProductDigestView(_DigestThrottled):
    """Range digests of the products the catalog holds (deleted ones included): what the admin's
    anti-entropy check compares with its own, descending only into ranges that differ
    (product_events/digest.py). The answer covers at most ``max_rows`` rows: its ``end`` is where
    it stopped."""

    @extend_schema(parameters=[DigestQuerySerializer], responses=DigestSerializer)
    def get(self, request):
        query = DigestQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, end, parts, max_rows = (query.validated_data[k]
                                       for k in ("start", "end", "parts", "max_rows"))
        found, covered, max_id = self.computed(lambda: selectors.product_digests(
            start=start, end=max(start, end), parts=parts, max_rows=max_rows))
        return Response({"start": start, "end": covered if end > start else end,
                         "max_id": max_id, "parts": [p.as_json() for p in found]})


class ProductDigestRowsView(_DigestThrottled):
    """Each product id of a small range with its version, deleted flag and row hash."""

    @extend_schema(parameters=[DigestRowsQuerySerializer], responses=DigestRowsSerializer)
    def get(self, request):
        query = DigestRowsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows, after = self.computed(lambda: selectors.product_digest_rows(
            start=query.validated_data["start"], end=query.validated_data["end"]))
        return Response({"rows": rows, "next": after})
