"""Request parsers of both APIs."""

import re

from rest_framework import parsers
from rest_framework.exceptions import ParseError

_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(data) -> bool:
    """Whether any key or string of the parsed document holds a lone UTF-16 surrogate (JSON's
    ``"\\ud800"`` escape decodes to one: it is not Unicode text, cannot be stored or written back
    as UTF-8). Iterative: the parser already bounded the depth."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, answering 400 to a document nested too deep for Python's decoder
    (``[[[[...]]]]`` thousands deep raises RecursionError, which DRF turns into a 500) and to
    strings that are not Unicode text (a lone surrogate, in a key too, would be echoed into an
    error response that cannot be encoded)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        if _lone_surrogate(data):
            raise ParseError("JSON parse error - a string holds a lone UTF-16 surrogate "
                             "(\\ud800-\\udfff), which is not Unicode text.")
        return data
