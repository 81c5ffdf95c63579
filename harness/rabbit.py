"""Break and restore the real RabbitMQ (always restored, even when the test fails)."""

from __future__ import annotations

import contextlib
import subprocess


def _ctl(*args: str, timeout: float = 120) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                   timeout=timeout)


@contextlib.contextmanager
def broker_stopped():
    """`rabbitmqctl stop_app` for the duration of the block; `start_app` afterwards."""
    _ctl("stop_app")
    try:
        yield
    finally:
        _ctl("start_app")
        _ctl("await_startup")


def _connections(vhost: str, field: str) -> list[str]:
    """``field`` (user, pid, ...) of each client connection to ``vhost``."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_connections", field, "vhost"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return [parts[0] for parts in (line.split("\t") for line in out.splitlines())
            if len(parts) == 2 and parts[1] == vhost]


def connection_users(vhost: str) -> set[str]:
    return set(_connections(vhost, "user"))


def close_connections(vhost: str, reason: str = "fault injection") -> int:
    """Close every client connection to ``vhost`` (as a broker restart would); how many."""
    pids = _connections(vhost, "pid")
    for pid in pids:
        _ctl("close_connection", pid, reason)
    return len(pids)


def _max_message_size() -> int:
    out = subprocess.run(["rabbitmqctl", "-q", "eval",
                          "application:get_env(rabbit, max_message_size)."],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return int(out.strip().strip("{}").split(",")[1])


@contextlib.contextmanager
def max_message_size(limit: int):
    """The broker refuses messages above ``limit`` bytes (for new channels) during the block;
    the previous limit is always restored. Broker-wide: keep ``limit`` above what other tests
    publish (a few hundred KB is)."""
    before = _max_message_size()
    _ctl("eval", f"application:set_env(rabbit, max_message_size, {int(limit)}).")
    try:
        yield
    finally:
        _ctl("eval", f"application:set_env(rabbit, max_message_size, {before}).")
