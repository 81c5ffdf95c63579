"""A TCP proxy for tests that can black-hole its traffic: in black-hole mode it stops forwarding
in both directions (connections stay open, new ones are accepted and held) but closes nothing,
like a network path that silently drops packets or a stuck failover. No RST, no FIN: only a
deadline on the client can notice.

    with BlackholeProxy(("127.0.0.1", 5432)) as proxy:
        url = proxy.url_for(database_url)
        proxy.blackhole(); ...; proxy.forward()
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class BlackholeProxy:
    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self._listener = socket.create_server((host, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._holed = threading.Event()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> BlackholeProxy:
        threading.Thread(target=self._accept, name="blackhole-accept", daemon=True).start()
        return self

    def blackhole(self) -> None:
        self._holed.set()

    def forward(self) -> None:
        self._holed.clear()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._socks:
                with contextlib.suppress(OSError):
                    sock.close()

    def __enter__(self) -> BlackholeProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def url_for(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by the proxy's."""
        scheme, rest = database_url.split("://", 1)
        netloc, path = rest.split("/", 1)
        user = netloc.rsplit("@", 1)[0] + "@" if "@" in netloc else ""
        return f"{scheme}://{user}{self.host}:{self.port}/{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        while self._holed.is_set() and not self._stop.is_set():  # held, not connected on
            self._stop.wait(0.05)
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._socks += [client, upstream]
        pair = {client: upstream, upstream: client}
        try:
            while not self._stop.is_set():
                if self._holed.is_set():  # read nothing, send nothing, close nothing
                    self._stop.wait(0.05)
                    continue
                ready, _, _ = select.select(list(pair), [], [], 0.05)
                for sock in ready:
                    if self._holed.is_set():
                        break
                    data = sock.recv(65536)
                    if not data or not self._forward(sock is client, data, pair[sock]):
                        return
        except OSError:
            return
        finally:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()

    def _forward(self, from_client: bool, data: bytes, to: socket.socket) -> bool:
        """Send on what one side sent; False closes the connection (both sides)."""
        to.sendall(data)
        return True


class CommitCutProxy(BlackholeProxy):
    """Cuts the connection that carries the next COMMIT (the simple-query message psycopg2
    sends), once ``cut()`` is called: with ``delivered`` the COMMIT reaches the server, which
    commits, and the connection is closed when its answer comes, before the client reads it
    (a network failing at the worst moment); without, the connection is closed instead of
    sending it (the server rolls back). After the cut, until ``forward()``: with
    ``refuse_after`` every new connection is closed at once (the server "cannot be
    reached"); with ``hole_after`` the proxy black-holes (new connections are held, nothing
    answers: only a deadline notices)."""

    COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        super().__init__(target, host)
        self._armed: dict | None = None
        self._refusing = threading.Event()
        self.cuts = 0

    def cut(self, *, delivered: bool, refuse_after: bool = False,
            hole_after: bool = False) -> None:
        self._armed = {"delivered": delivered, "refuse_after": refuse_after,
                       "hole_after": hole_after}

    def forward(self) -> None:
        super().forward()
        self._refusing.clear()

    def _serve(self, client: socket.socket) -> None:
        if self._refusing.is_set():
            client.close()
            return
        super()._serve(client)

    def _forward(self, from_client: bool, data: bytes, to: socket.socket) -> bool:
        armed = self._armed
        if from_client and armed is not None and self.COMMIT in data:
            self._armed = None
            self.cuts += 1
            if armed["refuse_after"]:
                self._refusing.set()
            if armed["hole_after"]:
                self.blackhole()
            if armed["delivered"]:
                to.sendall(data)
                to.settimeout(10)
                to.recv(65536)  # the server's answer: it committed; dropped
            return False
        return super()._forward(from_client, data, to)
