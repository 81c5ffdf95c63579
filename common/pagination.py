from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination


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
        if len(raw) > 1 or not raw[0].isdigit() or not 1 <= int(raw[0]) <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [
                f"A whole number from 1 to {self.max_page_size}, given once."]})
        return int(raw[0])

    def get_page_number(self, request, paginator):
        raw = request.query_params.getlist(self.page_query_param)
        if raw and (len(raw) > 1 or not (raw[0].isdigit() or raw[0] in self.last_page_strings)):
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
