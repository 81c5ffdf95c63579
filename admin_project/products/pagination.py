from common.pagination import StrictPageNumberPagination


class ProductPagination(StrictPageNumberPagination):
    page_size = 50
    max_page_size = 500
