"""Walking a paginated API in tests: every page, forwards and back."""

from __future__ import annotations

from collections.abc import Callable


def pages_walk(get: Callable, url: str) -> list[tuple[bytes, dict]]:
    """Each page's content and headers (but the request id), following ``next`` to the end
    and then ``previous`` back to the start; ``get`` is a test client's (or session's) get."""
    pages, body = [], None
    for link in ("next", "previous"):
        url = url if body is None else body["previous"]
        while url:
            r = get(url)
            assert r.status_code == 200, r.content[:300]
            pages.append((r.content, {k: v for k, v in r.headers.items()
                                      if k != "X-Request-ID"}))
            body = r.json()
            url = body[link]
    return pages
