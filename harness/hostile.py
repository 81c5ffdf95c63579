"""Hostile HTTP requests for the generative "no 5xx" tests of both web apps (hypothesis).

Every request is built from the app's own OpenAPI schema (its paths, methods and parameter
names) plus the paths outside it, with the inputs attackers and broken clients send: query values
in Unicode digits, huge, negative, empty, with NUL and control characters, repeated keys and
unknown names; path ids that are no ids; bodies that are deep, large, of the wrong type, not
UTF-8, not JSON, under every content type. The invariant: every answer is below 500."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# values that have broken parsers before: Unicode digits pass str.isdigit() but not int()
NASTY_TEXT = ["²", "١٢", "٣", "1²", "１", "𝟘", "Ⅻ", "-1", "-0", "0", "1e3", "0x10", "1.5", " 1",
              "1 ", "+1", "", " ", "9" * 30, "9" * 5000, "-" + "9" * 30, "\x00", "a\x00b",
              "\x7f", "\u202e", "NaN", "Infinity", "null", "true", "[]", "{}",
              "%00", "%ff", "' OR 1=1 --", "../../etc/passwd", "<script>", "é" * 3000]

text_values = st.one_of(
    st.sampled_from(NASTY_TEXT), st.sampled_from(NASTY_TEXT),  # twice: drawn half the time
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
    st.text(max_size=40),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=5),
)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 40),
                                                                max_value=10 ** 40),
                         st.floats(allow_nan=False), text_values)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(text_values, inner, max_size=4)), max_leaves=12)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _object_of(fields: list[str]) -> st.SearchStrategy[dict]:
    names = st.sampled_from(fields) if fields else text_values
    return st.dictionaries(st.one_of(names, text_values), json_values, max_size=6)


def body_strategy(fields: list[str]) -> st.SearchStrategy[tuple[bytes, str | None]]:
    """(body bytes, content type or None)."""
    json_types = st.sampled_from(["application/json", "application/json; charset=utf-8"])
    other_types = st.sampled_from([
        "text/plain", "application/xml", "application/x-www-form-urlencoded",
        "multipart/form-data", "multipart/form-data; boundary=x", "application/octet-stream",
        "application/json; charset=latin-1", "application/json; charset=nope", "*/*", "",
        "application/vnd.api+json", "application/x-www-form-urlencoded; charset=punycode",
        "application/json; charset=rot13", "multipart/form-data; boundary=x; charset=utf-7",
        "application/x-www-form-urlencoded; charset=base64", "application/json; charset=idna"])
    as_json = st.one_of(_object_of(fields), json_values).map(
        lambda v: json.dumps(v).encode())
    raw = st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b"", b"{", b"\xff\xfe{}", b'{"title": "\xff"}', b"\x00",
                         _deep(50).encode(), _deep(2000).encode(), _deep(100_000).encode(),
                         b'{"a":' * 5000 + b"1" + b"}" * 5000,
                         json.dumps({"title": "x" * 300_000}).encode(),
                         json.dumps([{"title": "t"}] * 20_000).encode()]),
    )
    return st.one_of(st.tuples(st.one_of(as_json, raw), json_types),
                     st.tuples(st.one_of(as_json, raw), st.one_of(other_types, st.none())))


# Django lookups a changelist (the Django admin) takes from the query string as filters
LOOKUPS = ("", "__exact", "__iexact", "__in", "__gt", "__lte", "__range", "__year", "__month",
           "__day", "__isnull", "__regex", "__contains", "__startswith", "__date", "__hour")


def lookup_params(model) -> list[str]:
    """Every ``field__lookup`` query parameter a changelist of ``model`` could be sent."""
    return [f"{f.name}{lookup}" for f in model._meta.concrete_fields for lookup in LOOKUPS] + [
        "pk", "q", "o", "p", "all", "_to_field", "_popup", "e"]


def operations(schema: dict, extra_paths) -> list[tuple[str, str, list[str], list[str]]]:
    """(method, path template, query parameter names, body field names) for every operation of
    the OpenAPI schema, and GET/POST for each of ``extra_paths`` (a path, or (path, query
    parameter names))."""
    out = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            params = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
            fields: list[str] = []
            content = op.get("requestBody", {}).get("content", {})
            for media in content.values():
                ref = media.get("schema", {}).get("$ref", "")
                component = schema.get("components", {}).get("schemas", {}).get(
                    ref.rsplit("/", 1)[-1], {})
                fields += list(component.get("properties", {}))
            out.append((method.upper(), path, params, sorted(set(fields))))
    for extra in extra_paths:
        path, params = (extra, []) if isinstance(extra, str) else extra
        out += [("GET", path, list(params), []), ("POST", path, list(params), [])]
    return out


def path_ids(known: list[int]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from([str(i) for i in known] or ["1"]),
                     st.sampled_from(["0", "-1", "²", "１", "9" * 30, "x", "%00", "1.0",
                                      "%E2%80%AE"]),
                     st.integers(min_value=-(10 ** 20), max_value=10 ** 20).map(str))


def requests_for(ops, known_ids: list[int]):
    """A strategy of (method, url path, query pairs, body, content type)."""

    @st.composite
    def build(draw):
        method, template, params, fields = draw(st.sampled_from(ops))
        path = template
        while "{" in path:
            start, end = path.index("{"), path.index("}")
            path = path[:start] + draw(path_ids(known_ids)) + path[end + 1:]
        # each documented parameter half the time, with a hostile value, plus unknown ones
        query = [(name, draw(text_values)) for name in params if draw(st.booleans())]
        query += draw(st.lists(st.tuples(text_values, text_values), max_size=3))
        if params and draw(st.booleans()):  # the same key repeated
            name = draw(st.sampled_from(params))
            query += [(name, draw(text_values)) for _ in range(draw(st.integers(2, 4)))]
        body, content_type = (b"", None)
        if method in ("POST", "PUT", "PATCH") or draw(st.booleans()):
            body, content_type = draw(body_strategy(fields))
        return method, path, query, body, content_type

    return build()


def assert_no_5xx(operation, clients: dict, known_ids: list[int], examples: int) -> None:
    """Send ``examples`` hostile requests for ``operation`` through Django test ``clients``
    (role -> Client(raise_request_exception=False)); fail on the first answer >= 500."""
    @given(request=requests_for([operation], known_ids), role=st.sampled_from(sorted(clients)))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def one(request, role):
        method, path, query, body, content_type = request
        url = path + ("?" + urlencode(query) if query else "")
        extra = {"content_type": content_type} if content_type is not None else {}
        r = clients[role].generic(method, url, data=body, **extra)
        assert r.status_code < 500, (role, method, url[:300], body[:300], content_type,
                                     r.status_code, r.content[:500])

    one()


def guarded_client(*args, **kwargs):
    """Django's test Client with the production WSGI guard in front (common/wsgi.py): what
    gunicorn serves refuses a request's bad charset before Django builds the request."""
    from django.http import JsonResponse
    from django.test import Client

    from common.wsgi import charset_refused

    client = Client(*args, **kwargs)
    inner = client.handler

    def handler(environ):
        problem = charset_refused(environ)
        if problem:
            response = JsonResponse({"detail": problem}, status=415)
            response.wsgi_request = None  # Django never built one
            return response
        return inner(environ)

    client.handler = handler
    return client
