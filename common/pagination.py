import base64
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC
from decimal import Decimal
from functools import cache
from operator import itemgetter
from urllib import parse

import msgspec
from django.db import connections
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination, _reverse_ordering
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import ISO_8601, api_settings


def ascii_int(raw: str | None, *, maximum: int) -> int | None:
    """``raw`` as an integer from 1 to ``maximum`` if it is one written in ASCII digits (at most
    19 of them), else None. (``str.isdigit`` accepts "²" and "١", which ``int`` then refuses or
    reads: query parameters take 0-9 only.)"""
    if raw is None or not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= maximum else None


logger = logging.getLogger("common.pagination")
_DIGITS = re.compile(r"[0-9]{1,19}")
_first = itemgetter(0)  # a values_list() row's ordering column
_encode = msgspec.json.Encoder().encode
_raw = msgspec.Raw
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
    # rows read at once by paginate_rows: at the contract's longest texts, in 4-byte
    # characters, 2,500 rows are ~108 MB of Python text (27 MB in 1-byte ones); fewer cost one
    # more query per 2,500 rows (CHUNK 1,000: +15% a 10,000-row page on a loaded machine)
    CHUNK = 2500
    BUDGET = 4_000_000  # bytes of JSON a page of paginate_rows reaches at most (+1 row)

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

    _page_of_positions = False  # paginate_rows: self.page holds the rows' positions

    def _get_position_from_instance(self, instance, ordering):
        if isinstance(instance, tuple):  # a values_list() row: the ordering field comes first
            return str(instance[0])
        if self._page_of_positions:  # an ordering column's value (no tuple a row: no GC work)
            return str(instance)
        return super()._get_position_from_instance(instance, ordering)

    def paginate_rows(self, queryset: QuerySet, request, view,
                      write: Callable[[list[tuple]], bytes]) -> list[bytes]:
        """``paginate_queryset`` for rows written as they are read (``keyset_json_response``):
        DRF's decisions (ordering, cursor position and offset, the row after the page, what
        ``next`` and ``previous`` point at), DRF's query when the page fits in one chunk; the
        JSON arrays ``write`` makes of the page's rows, a chunk's rows each, in page order
        (``RowWriter.join`` makes them one). ``queryset`` is a ``values_list`` whose first
        column is the ordering field.

        The rows are read ``CHUNK`` at a time (``id > <last id read>``: one more keyset query
        each), and the page ends early, at a row, once its JSON reaches ``BUDGET`` bytes; the
        row after it is then where ``next`` starts, as after a full page. So a page of
        ``max_page_size`` rows holds at most ``CHUNK`` rows, its ids and about ``BUDGET``
        bytes of JSON at once in memory, however long the products' texts are (the contract
        allows 10,764 characters a product)."""
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, queryset, view)
        self.cursor = self.decode_cursor(request)
        offset, reverse, current_position = (0, False, None) if self.cursor is None \
            else self.cursor
        order = self.ordering[0]
        # DRF: (cursor reversed) XOR (ordering reversed) reads downwards
        after = order.lstrip("-") + ("__lt" if reverse != order.startswith("-") else "__gt")
        queryset = queryset.order_by(*(_reverse_ordering(self.ordering) if reverse
                                       else self.ordering))
        ids, texts, size, following = [], [], 0, None
        position, skip = current_position, offset
        while True:
            full = bool(ids) and size >= self.BUDGET  # only the row after the page is wanted
            limit = 1 if full else self.page_size + 1 - len(ids)  # +1: the row after the page
            limit = limit if limit <= self.CHUNK + 1 else self.CHUNK
            chunk = queryset if position is None else queryset.filter(**{after: position})
            chunk = list(chunk[skip:skip + limit])
            keep = 0 if full else min(self.page_size - len(ids), len(chunk))
            rows = chunk[:keep]
            written = write(rows[::-1] if reverse else rows) if keep else b"[]"
            grown = len(written) - 1  # the rows and their commas
            if size + grown >= self.BUDGET:  # the page ends at the row that reaches it
                grown = keep = 0
                for row in rows:
                    if (ids or keep) and size + grown >= self.BUDGET:
                        break
                    grown, keep = grown + len(write([row])) - 1, keep + 1
                rows = rows[:keep]
                written = write(rows[::-1] if reverse else rows)
            size += grown
            if keep:
                texts.append(written)
            ids += map(_first, chunk[:keep])  # positions, for next and previous
            if keep < len(chunk):
                following = chunk[keep]
                break
            if len(chunk) < limit:
                break  # the end of the list
            position, skip = chunk[-1][0], 0
        following_position = None if following is None else \
            self._get_position_from_instance(following, self.ordering)
        self.page, self._page_of_positions = ids, True
        if reverse:  # as DRF's paginate_queryset
            self.page.reverse()
            texts.reverse()
            self.has_next = current_position is not None or offset > 0
            self.has_previous = following is not None
            if self.has_next:
                self.next_position = current_position
            if self.has_previous:
                self.previous_position = following_position
        else:
            self.has_next = following is not None
            self.has_previous = current_position is not None or offset > 0
            if self.has_next:
                self.next_position = following_position
            if self.has_previous:
                self.previous_position = current_position
        if (self.has_previous or self.has_next) and self.template is not None:
            self.display_page_controls = True
        return texts


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
    project's own tools read with the cursor. On views with ``KeysetJSONListMixin``, a cursor
    page in plain JSON is written from the rows' columns (``keyset_json_response``): the same
    bytes at a fraction of the cost, and up to ``cursor_max_page_size`` rows a page."""

    cursor_query_param = "cursor"

    # the largest cursor page written from rows (keyset_json_response: no model instances,
    # no serializer, bounded memory); other cursor pages stay at max_page_size
    cursor_max_page_size = 10_000

    def _cursor_mode(self, request, view, *, rows: bool = False) -> KeysetCursorPagination | None:
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
        if rows:
            paginator.max_page_size = self.cursor_max_page_size
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
                               "follow `next`. Same cost on any page; no `count`." + (
                                   f" In JSON, `page_size` may be up to "
                                   f"{self.cursor_max_page_size} with it; a page of long "
                                   "products may hold fewer than asked (follow `next`)."
                                   if isinstance(view, KeysetJSONListMixin) else ""),
                "schema": {"type": "string"}})
        return params

    def keyset_json_response(self, queryset: QuerySet, writer: "RowWriter", request,
                             view) -> Response | None:
        """The keyset page of ``queryset`` as the response DRF would give for it: the same
        paginator (cursor checks, errors, ``next`` and ``previous``), the same envelope, the
        same bytes; but the page is read as tuples of columns (``writer.rows``) and each row is
        written as JSON text by ``writer``: no model instances, no serializer. None when the
        request is not for a cursor page rendered as plain JSON (numbered pages, the browsable
        API, ``Accept: application/json; indent=4``): the caller then answers as usual."""
        if self.cursor_query_param not in request.query_params or not _plain_json(request):
            return None
        self._keyset = keyset = self._cursor_mode(request, view, rows=True)
        utc = utc_both(connections[queryset.db])
        page = writer.page
        texts = keyset.paginate_rows(writer.rows(queryset), request, view,
                                     lambda rows: page(rows, utc))
        envelope = request.accepted_renderer.render(
            {"next": keyset.get_next_link(), "previous": keyset.get_previous_link(),
             "results": []},
            request.accepted_media_type, view.get_renderer_context())
        assert envelope.endswith(b"[]}"), envelope  # results is the last key: spliced in
        return RenderedJSONResponse(b"".join([envelope[:-3], writer.join(texts), b"}"]))


class KeysetJSONListMixin:
    """For a list view paginated by ``PageOrCursorPagination`` that names a
    ``cursor_ordering``: its cursor pages in plain JSON are written from the rows' columns by
    the ``RowWriter`` of its serializer (``keyset_json_response``), the same bytes as DRF's;
    anything else (numbered pages, other renderings, a serializer the writer cannot follow) is
    DRF's own ``list``."""

    def list(self, request, *args, **kwargs):
        paginator, ordering = self.paginator, getattr(self, "cursor_ordering", None)
        if isinstance(paginator, PageOrCursorPagination) and ordering is not None:
            writer = row_writer(self.get_serializer_class(), ordering)
            if writer is not None:
                response = paginator.keyset_json_response(
                    self.filter_queryset(self.get_queryset()), writer, request, self)
                if response is not None:
                    return response
        return super().list(request, *args, **kwargs)


def _plain_json(request) -> bool:
    """Whether the response is DRF's JSONRenderer with its default output: compact, UTF-8
    text unescaped, no indent (what ``RowWriter`` writes)."""
    renderer = getattr(request, "accepted_renderer", None)
    return (type(renderer) is JSONRenderer and not renderer.ensure_ascii and renderer.compact
            and renderer.get_indent(request.accepted_media_type, {}) is None)


class RenderedJSONResponse(Response):
    """A DRF response whose JSON is already written: the view still negotiates, throttles and
    adds its headers; the content type is set as ``Response.rendered_content`` sets it."""

    def __init__(self, content: bytes):
        super().__init__(None)
        self._prerendered = content

    @property
    def rendered_content(self):
        renderer = self.accepted_renderer
        self["Content-Type"] = (renderer.media_type if renderer.charset is None
                                else f"{renderer.media_type}; charset={renderer.charset}")
        return self._prerendered


def utc_both(connection) -> bool:
    """Whether the connection's time zone (the offset in its ``timestamptz`` text) and the
    one DRF writes datetimes in (the current time zone) are both UTC."""
    current = timezone.get_current_timezone()
    return connection.timezone_name == "UTC" and (
        current is UTC or getattr(current, "key", None) == "UTC")


# The serializer fields a RowWriter follows: exactly these classes' to_representation (a
# subclass that keeps it, such as a URLField or the admin's PriceField, too).
_KINDS = [(serializers.BooleanField, "bool"), (serializers.BigIntegerField, "bigint"),
          (serializers.IntegerField, "int"),
          (serializers.CharField, "str"), (serializers.DecimalField, "decimal"),
          (serializers.DateTimeField, "datetime")]


def _kind(field) -> str | None:
    for base, kind in _KINDS:
        if isinstance(field, base) and type(field).to_representation is base.to_representation:
            return kind
    return None


class Unsupported(Exception):
    """A serializer a RowWriter cannot follow exactly: its list is DRF's own."""


class RowWriter:
    """Writes what ``serializer_class(instance).data`` renders to (DRF's JSONRenderer:
    compact, UTF-8 text unescaped) straight from a row of columns, for a ``ModelSerializer``
    whose readable fields are plain model columns shown by DRF's Integer, BigInteger, Char,
    Boolean, Decimal or DateTime fields (anything else raises ``Unsupported``).

    The row (``rows(queryset)``: ``values_list``, the ordering column first) holds decimals
    and datetimes as PostgreSQL's text (``Cast(..., TextField())``: ``"9.90"``,
    ``"2026-01-01 00:00:00.12+00"``). A function generated for the serializer turns a row
    into a record of the fields' values (a msgspec Struct with the serializer's field names,
    in its order), and msgspec writes a chunk of records as one JSON array (its text escapes
    are the standard library's, without ``ensure_ascii``, as DRF's renderer): text as it is,
    a decimal's text as it is when it has the field's places (PostgreSQL writes every digit
    of a column's scale, as DRF's quantize does), a datetime's text sliced into DRF's ISO
    8601 form when it reads in UTC and DRF writes in UTC (``utc``). Any other value (a NaN,
    another time zone, a year outside 1-9999) is written by the serializer's own field on the
    parsed value (``_value``). tests/catalog/test_cursor_json.py compares the bytes with
    DRF's on generated rows."""

    def __init__(self, serializer_class, ordering: str):
        serializer = serializer_class()
        meta = getattr(serializer, "Meta", None)
        model = getattr(meta, "model", None)
        if model is None or type(serializer).to_representation is not \
                serializers.Serializer.to_representation:
            raise Unsupported(f"{serializer_class.__name__}: not a plain ModelSerializer")
        self.fields = [(name, field, _kind(field))
                       for name, field in serializer.fields.items() if not field.write_only]
        first = self.fields[0][1].source if self.fields else None
        skip = 0 if first == ordering else 1  # the ordering column first: the cursor's position
        self.columns: list = [ordering] * skip
        prelude, parts = [], []
        for i, (name, field, kind) in enumerate(self.fields):
            if kind is None or not name.isidentifier() or "." in field.source:
                raise Unsupported(f"{serializer_class.__name__}.{name}: {type(field).__name__}")
            column = model._meta.get_field(field.source)
            if column.is_relation or not column.concrete:
                raise Unsupported(f"{serializer_class.__name__}.{name}: not a column")
            c = f"c{i}"
            as_text = kind in ("decimal", "datetime")
            self.columns.append(Cast(field.source, TextField()) if as_text else field.source)
            if column.null:  # (no list here has one: DRF's answer, not a fast one)
                parts.append(f"None if {c} is None else _raw(_value({i}, {c}, utc))")
            elif kind == "int" or (kind == "bigint" and not getattr(
                    field, "coerce_to_string", api_settings.COERCE_BIGINT_TO_STRING)):
                parts.append(c)
            elif kind == "bigint":  # COERCE_BIGINT_TO_STRING: "12"
                parts.append(f"str({c})")
            elif kind == "str":
                parts.append(c)
            elif kind == "bool":
                parts.append(f"True if {c} else False")
            elif kind == "decimal" and field.decimal_places >= 1 and not field.localize and \
                    not field.normalize_output and getattr(
                        field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING):
                # "9.90" as it is; any other text (NaN) through the field (a string of digits)
                places = field.decimal_places
                fast = f'{c}[-{places + 1}] == "."' if places < 3 else \
                    f'{c}[-{places + 1}:-{places}] == "."'
                parts.append(f"{c} if {fast} else _text({i}, {c}, utc)")
            elif kind == "datetime" and not hasattr(field, "timezone") and str(getattr(
                    field, "format", api_settings.DATETIME_FORMAT)).lower() == ISO_8601:
                # "2026-01-01 00:00:00+00" -> "2026-01-01T00:00:00Z" (DRF's text is ASCII)
                prelude.append(f'    p{i} = f"{{{c}[:10]}}T{{{c}[11:19]}}Z" if utc and '
                               f'len({c}) == 22 and {c}[19:] == "+00" and {c}[10] == " " '
                               f'else _text({i}, {c}, utc)\n')
                parts.append(f"p{i}")
            else:  # a decimal or datetime field with other output settings
                parts.append(f"_raw(_value({i}, {c}, utc))")
        names = "".join(f"c{i}, " for i in range(len(self.fields)))
        record = msgspec.defstruct(  # f0, f1, ...: any name a serializer field may have
            f"{serializer_class.__name__}Row", [(f"f{i}", object) for i in range(len(parts))],
            rename={f"f{i}": name for i, (name, _, _) in enumerate(self.fields)}, gc=False)
        source = (f"def write(row, utc):\n"
                  f"    {'_, ' * skip}{names}= row\n"
                  f"{''.join(prelude)}"
                  f"    return _record({', '.join(f'({part})' for part in parts)})\n")
        scope = {"_record": record, "_raw": _raw, "_text": self._text, "_value": self._value}
        exec(compile(source, f"<RowWriter {serializer_class.__name__}>", "exec"), scope)
        self.source = source
        self.write: Callable[[tuple, bool], msgspec.Struct] = scope["write"]

    def rows(self, queryset: QuerySet) -> QuerySet:
        return queryset.values_list(*self.columns)

    def page(self, rows: list[tuple], utc: bool) -> bytes:
        """The JSON array of the rows' objects (UTF-8)."""
        write = self.write
        return _encode([write(row, utc) for row in rows])

    @staticmethod
    def join(arrays: list[bytes]) -> bytes:
        """The one JSON array of the rows of ``arrays`` (each ``page``'s), as DRF's renderer
        writes it: it escapes U+2028 and U+2029 in the whole text (a strict JavaScript
        subset); in UTF-8 their bytes are these and nothing else's."""
        text = b"[" + b",".join([a[1:-1] for a in arrays if len(a) > 2]) + b"]"
        if b"\xe2\x80\xa8" in text or b"\xe2\x80\xa9" in text:
            text = text.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9",
                                                                      b"\\u2029")
        return text

    def _text(self, i: int, text, utc: bool):
        """What field ``i`` gives for a column's value (a decimal's or a datetime's as
        PostgreSQL's text): a datetime with microseconds in UTC sliced, anything else by the
        field on the parsed value."""
        name, field, kind = self.fields[i]
        if kind == "decimal":
            value = Decimal(text)
            if not value.is_finite():  # (Django refuses to read NaN: a 500 either way)
                raise ValueError(f"{name}: {text} is not a decimal number")
        elif kind == "datetime":
            if utc and 24 <= len(text) <= 29 and text[19] == "." and text[-3:] == "+00" \
                    and text[10] == " " and text[4] == "-" and not hasattr(field, "timezone"):
                return f"{text[:10]}T{text[11:19]}.{text[20:-3]:0<6}Z"
            value = parse_datetime(text)
            if value is None:
                raise ValueError(f"{name}: not a PostgreSQL timestamptz: {text!r}")
        else:
            value = text
        return field.to_representation(value)

    def _value(self, i: int, text, utc: bool) -> str:
        """Field ``i``'s JSON for a column's value, as DRF's JSONRenderer writes it."""
        return json.dumps(None if text is None else self._text(i, text, utc),
                          cls=JSONRenderer.encoder_class, ensure_ascii=False,
                          allow_nan=not JSONRenderer.strict, separators=(",", ":"))


@cache
def row_writer(serializer_class, ordering: str) -> RowWriter | None:
    """The serializer's RowWriter, or None (logged once) when it cannot have one."""
    try:
        return RowWriter(serializer_class, ordering)
    except Unsupported as exc:
        logger.warning("cursor pages of %s are written by DRF: %s", serializer_class.__name__,
                       exc)
        return None
