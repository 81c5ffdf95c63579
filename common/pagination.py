import base64
import re
from urllib import parse

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination


def ascii_int(raw: str | None, *, maximum: int) -> int | None:
    """``raw`` as an integer from 1 to ``maximum`` if it is one written in ASCII digits (at most
    19 of them), else None. (``str.isdigit`` accepts "²" and "١", which ``int`` then refuses or
    reads: query parameters take 0-9 only.)"""
    if raw is None or not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= maximum else None


_DIGITS = re.compile(r"[0-9]{1,19}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{0,200}={0,2}")


class StrictPageNumberPagination(PageNumberPagination):
    """Page-number pagination that answers 400 to a bad ``page_size`` instead of silently
    using the default (DRF's behaviour): bad input gets a clear error."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        raw = request.query_params.getlist(self.page_size_query_param)
        if not raw:
            return self.page_size
        size = ascii_int(raw[0], maximum=self.max_page_size) if len(raw) == 1 else None
        if size is None:
            raise ValidationError({self.page_size_query_param: [
                f"A whole number from 1 to {self.max_page_size}, given once."]})
        return size

    def page_number_check(self, request) -> None:
        raw = request.query_params.getlist(self.page_query_param)
        if raw and (len(raw) > 1 or not (ascii_int(raw[0], maximum=10**9)
                                         or raw[0] in self.last_page_strings)):
            raise NotFound("Invalid page.")  # DRF's answer to "?page=abc", also for "?page="

    def get_page_number(self, request, paginator):
        self.page_number_check(request)
        return super().get_page_number(request, paginator)

    def get_schema_operation_parameters(self, view):
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.page_size_query_param:
                param["schema"].update(minimum=1, maximum=self.max_page_size)
            if param["name"] == self.page_query_param:
                param["schema"]["minimum"] = 1
        return params


class KeysetCursorPagination(CursorPagination):
    """Keyset pages: ``WHERE id > <last id of the page before> ORDER BY id LIMIT n``, the
    same cost for the first page and the millionth, and no ``COUNT(*)``. The cursor is DRF's
    opaque one (follow ``next``); a cursor that is not one this API made is a 404, like a bad
    ``?page=``."""

    ordering = "id"
    page_size = StrictPageNumberPagination.page_size
    page_size_query_param = "page_size"
    max_page_size = StrictPageNumberPagination.max_page_size
    get_page_size = StrictPageNumberPagination.get_page_size

    def decode_cursor(self, request):
        raw = request.query_params.getlist(self.cursor_query_param)
        if len(raw) > 1 or (raw and raw[0] and not _written_by_drf(raw[0])):
            raise NotFound(self.invalid_cursor_message)  # (DRF's decoding skips junk)
        cursor = super().decode_cursor(request)
        # the position is an id this API wrote: anything else would reach the database as a
        # value it refuses (a 500), or scan from nowhere
        if cursor is not None and cursor.position is not None and \
                ascii_int(cursor.position, maximum=2**63 - 1) is None:
            raise NotFound(self.invalid_cursor_message)
        return cursor


def _written_by_drf(raw: str) -> bool:
    """Whether ``raw`` is a cursor as DRF writes them: base64 of ``o``, ``r``, ``p`` tokens,
    each at most once, nothing else."""
    if not _BASE64.fullmatch(raw):
        return False
    try:
        tokens = parse.parse_qs(base64.b64decode(raw, validate=True).decode("ascii"),
                                keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return False
    return bool(tokens) and not set(tokens) - {"o", "r", "p"} and \
        all(len(v) == 1 for v in tokens.values())


class PageOrCursorPagination(StrictPageNumberPagination):
    """``?page=N`` (the default: numbered pages with a ``count``; each page costs a
    ``COUNT(*)`` and an ``OFFSET``, so deep pages of a large table are slow) or, on views that
    name a unique ``cursor_ordering``, ``?cursor=`` (empty for the first page, then the ``next``
    link): keyset pages, ``{"next", "previous", "results"}``, the same cost on any page. The
    project's own tools read with the cursor."""

    cursor_query_param = "cursor"

    def _cursor_mode(self, request, view) -> KeysetCursorPagination | None:
        if self.cursor_query_param not in request.query_params:
            return None
        ordering = getattr(view, "cursor_ordering", None)
        if ordering is None:
            raise ValidationError({self.cursor_query_param: [
                "This list has numbered pages only (?page=)."]})
        # ?page= means nothing to a keyset page: ignored, but it must still be a page number
        # (the schema says what one is, and a value outside it is refused on every list)
        self.page_number_check(request)
        paginator = KeysetCursorPagination()
        paginator.ordering = ordering
        return paginator

    def paginate_queryset(self, queryset, request, view=None):
        self._keyset = self._cursor_mode(request, view)
        if self._keyset is not None:
            return self._keyset.paginate_queryset(queryset, request, view)
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        if getattr(self, "_keyset", None) is not None:
            return self._keyset.get_paginated_response(data)
        return super().get_paginated_response(data)

    def get_paginated_response_schema(self, schema):
        page = super().get_paginated_response_schema(schema)
        page["required"] = ["next", "previous", "results"]  # count: numbered pages only
        page["properties"]["count"]["description"] = "With ?page= only."
        return page

    def get_schema_operation_parameters(self, view):
        params = super().get_schema_operation_parameters(view)
        if getattr(view, "cursor_ordering", None) is not None:
            params.append({
                "name": self.cursor_query_param, "required": False, "in": "query",
                "description": "Keyset pages ordered by id: empty for the first page, then "
                               "follow `next`. Same cost on any page; no `count`.",
                "schema": {"type": "string"}})
        return params
