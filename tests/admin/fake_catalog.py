"""A test double of the catalog's digest API (``/api/product-digests/`` and ``.../rows/``, as
catalog_project/catalog/views.py serves them: product_events/digest.py) over a dict, computed in
Python (``digest.row_hash``, which a test checks against the SQL), with the behaviours the
anti-entropy check must survive: a rate limit (429 + Retry-After), busy answers (503 +
Retry-After), ranges too costly for the statement timeout (400 ``range_too_costly``). It records
every request."""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from product_events import digest


class FakeCatalog:
    def __init__(self):
        # id -> (version, deleted, title, image, price as PostgreSQL prints it, description)
        self.rows: dict[int, tuple] = {}
        self.rate: tuple[int, float] | None = None  # (requests, per seconds), like DRF's
        self.too_costly_above: int | None = None    # rows a digest may cover
        self.busy = 0                               # answer 503 this many times first (its
        #                                             database unavailable: the real one)
        self.requests: list[tuple[str, dict, int]] = []
        self._times: list[float] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    # --- state ---
    def copy_admin(self):
        """The catalog equal to the admin database (products and tombstones)."""
        from admin_project.products.models import Product, ProductTombstone

        self.rows = {p.pk: (p.version, False, p.title, p.image, str(p.price), p.description)
                     for p in Product.objects.all()}
        self.rows.update({t.product_id: (t.version, True, "", "", "0", "")
                          for t in ProductTombstone.objects.all()})

    def _hash(self, pid: int) -> int:
        version, deleted, title, image, price, description = self.rows[pid]
        return digest.row_hash(id=pid, version=version, deleted=deleted, title=title,
                               image=image, price=price, description=description)

    def digests(self, path: str) -> list[tuple[str, dict, int]]:
        return [r for r in self.requests if r[0] == path]

    # --- the API ---
    def answer(self, path: str, q: dict) -> tuple[int, dict, dict]:
        with self._lock:
            now = time.monotonic()
            if self.rate is not None:
                n, per = self.rate
                self._times = [t for t in self._times if t > now - per]
                if len(self._times) >= n:
                    wait = math.ceil(self._times[0] + per - now)
                    return 429, {"Retry-After": str(max(1, wait))}, {"detail": "throttled"}
                self._times.append(now)
            if self.busy:
                self.busy -= 1
                return 503, {"Retry-After": "1"}, {"detail": "busy"}
            start, end = int(q["start"]), int(q["end"])
            ids = sorted(i for i in self.rows if start <= i < end)
            if path == "":
                parts = int(q.get("parts", 16))
                max_rows = min(int(q.get("max_rows", digest.MAX_DIGEST_ROWS)),
                               digest.MAX_DIGEST_ROWS)
                covered = end
                if len(ids) > max_rows:
                    covered, ids = ids[max_rows], ids[:max_rows]
                if self.too_costly_above is not None and len(ids) > self.too_costly_above:
                    return 400, {}, {"detail": "ask for a smaller range",
                                     "code": "range_too_costly"}
                w = digest.width(start, covered, parts)
                found: dict[int, list[int]] = {}
                for i in ids:
                    found.setdefault((i - start) // w, []).append(self._hash(i))
                out = []
                for part, hashes in sorted(found.items()):
                    lo = start + part * w
                    out.append({"start": lo, "end": min(covered, lo + w), "count": len(hashes),
                                "digest": str(sum(hashes))})
                return 200, {}, {"start": start, "end": covered,
                                 "max_id": max(self.rows, default=0), "parts": out}
            page = ids[:digest.MAX_ROWS + 1]
            rows = [{"id": i, "version": self.rows[i][0], "deleted": self.rows[i][1],
                     "hash": str(self._hash(i))} for i in page[:digest.MAX_ROWS]]
            nxt = page[digest.MAX_ROWS] if len(page) > digest.MAX_ROWS else None
            return 200, {}, {"rows": rows, "next": nxt}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                path = url.path.removeprefix("/api/product-digests/")
                status, headers, body = fake.answer(path, q)
                fake.requests.append((path, q, status))
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler
