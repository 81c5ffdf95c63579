import re

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination


def ascii_int(raw: str | None, *, maximum: int) -> int | None:
    """``raw`` as an integer from 1 to ``maximum`` if it is one written in ASCII digits (at most
    19 of them), else None. (``str.isdigit`` accepts "²" and "١", which ``int`` then refuses or
    reads: query parameters take 0-9 only.)"""
    if raw is None or not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= maximum else None


_DIGITS = re.compile(r"[0-9]{1,19}")


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

    def get_page_number(self, request, paginator):
        raw = request.query_params.getlist(self.page_query_param)
        if raw and (len(raw) > 1 or not (ascii_int(raw[0], maximum=10**9)
                                         or raw[0] in self.last_page_strings)):
            raise NotFound("Invalid page.")  # DRF's answer to "?page=abc", also for "?page="
        return super().get_page_number(request, paginator)

    def get_schema_operation_parameters(self, view):
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.page_size_query_param:
                param["schema"].update(minimum=1, maximum=self.max_page_size)
            if param["name"] == self.page_query_param:
                param["schema"]["minimum"] = 1
        return params
