"""The WSGI entry of both web apps: ``application = guarded(get_wsgi_application())``.

Django turns a request body's declared ``charset`` into the request's encoding while it builds
the request, before any middleware: a codec that is not a text encoding (``rot13``, ``base64``)
or that fails on the query string (``punycode``, ``idna``) raised there and gave a 500. The
guard answers 415 before Django sees such a request."""

from __future__ import annotations

import codecs
import json
from email.message import Message

# text encodings a browser or an HTTP client sends
ALLOWED_CHARSETS = frozenset({"utf-8", "ascii", "iso8859-1", "cp1252", "utf-16", "utf-16-le",
                              "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})


def charset_refused(environ) -> str | None:
    """Why the request's declared charset is refused, or None."""
    content_type = environ.get("CONTENT_TYPE") or ""
    if "charset" not in content_type.lower():
        return None
    msg = Message()
    msg["content-type"] = content_type
    charset = msg.get_param("charset")
    if not charset or not isinstance(charset, str):
        return None
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        name = None  # unknown (Django would ignore it and read UTF-8: refuse, do not guess)
    if name in ALLOWED_CHARSETS:
        return None
    return f"Unsupported charset {charset[:40]!r}: send UTF-8."


def guarded(app):
    def application(environ, start_response):
        problem = charset_refused(environ)
        if problem is None:
            return app(environ, start_response)
        body = json.dumps({"detail": problem}).encode()
        start_response("415 Unsupported Media Type", [("Content-Type", "application/json"),
                                                       ("Content-Length", str(len(body)))])
        return [body]

    return application
