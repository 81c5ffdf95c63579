"""A small closed-loop HTTP load client: N threads POST products for S seconds.

    python bench/http_load.py TOKEN THREADS SECONDS URL [URL ...] [--window W]

With one URL it loads that server for S seconds. With several (the same API served with
different settings, all running), it switches every thread to the next server every W seconds
in the order A B B A A B B A ..., so that each server is measured in many short windows
interleaved in time: this machine's speed drifts by 20% from one minute to the next, and a
drift then touches both servers alike. A 2 s warm-up (not counted) loads every server first.

Prints JSON: per server {requests, rps, p50_ms, p99_ms, errors, cpu_s, cpu_ms_per_request} and,
with several, the windows [{server, requests, rps, cpu_s}]. cpu is the whole machine's
(/proc/stat, every process), over the counted windows."""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpu import busy_seconds  # noqa: E402

WARMUP = 2.0
ORDER = (0, 1, 1, 0)  # with two servers: every pair of windows has one of each, both orders


def schedule(servers: int, seconds: float, window: float) -> list[int]:
    """The server of each window."""
    n = max(1, round(seconds / window))
    if servers == 1:
        return [0] * n
    if servers == 2:
        return [ORDER[i % 4] for i in range(n)]
    return [i % servers for i in range(n)]


def quantile_ms(sorted_seconds: list[float], q: float) -> float:
    if not sorted_seconds:
        return 0.0
    return sorted_seconds[min(len(sorted_seconds) - 1, int(q * len(sorted_seconds)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("token")
    ap.add_argument("threads", type=int)
    ap.add_argument("seconds", type=float)
    ap.add_argument("urls", nargs="+")
    ap.add_argument("--window", type=float, default=None)
    args = ap.parse_args()
    urls = [urlsplit(u) for u in args.urls]
    window = args.window or args.seconds
    plan = schedule(len(urls), args.seconds, window)
    body = json.dumps({"title": "load", "price": "1.00", "description": "bench"})
    headers = {"Authorization": f"Token {args.token}", "Content-Type": "application/json"}
    start = time.perf_counter()
    counted_from = start + WARMUP * len(urls)
    stop_at = counted_from + window * len(plan)
    lock = threading.Lock()
    latencies: list[list[float]] = [[] for _ in plan]  # per window
    errors = [0] * len(urls)

    def server_at(t: float) -> tuple[int, int | None]:
        """(server, counted window or None) for a request starting at ``t``."""
        if t < counted_from:
            return min(len(urls) - 1, int((t - start) / WARMUP)), None
        i = min(len(plan) - 1, int((t - counted_from) / window))
        return plan[i], i

    def run():
        conns = [http.client.HTTPConnection(u.hostname, u.port, timeout=30) for u in urls]
        mine = [[] for _ in plan]
        bad = [0] * len(urls)
        while (t0 := time.perf_counter()) < stop_at:
            server, i = server_at(t0)
            try:
                conns[server].request("POST", urls[server].path, body=body, headers=headers)
                resp = conns[server].getresponse()
                resp.read()
                if resp.status != 201:
                    bad[server] += 1
            except (OSError, http.client.HTTPException):
                bad[server] += 1
                conns[server].close()
                conns[server] = http.client.HTTPConnection(urls[server].hostname,
                                                           urls[server].port, timeout=30)
            if i is not None:
                mine[i].append(time.perf_counter() - t0)
        with lock:
            for i, lat in enumerate(mine):
                latencies[i].extend(lat)
            for s, n in enumerate(bad):
                errors[s] += n

    workers = [threading.Thread(target=run) for _ in range(args.threads)]
    for w in workers:
        w.start()
    cpu_marks = []
    for i in range(len(plan) + 1):  # the machine's CPU at every window boundary
        time.sleep(max(0.0, counted_from + i * window - time.perf_counter()))
        cpu_marks.append(busy_seconds())
    for w in workers:
        w.join()

    windows = [{"server": plan[i], "requests": len(latencies[i]),
                "rps": len(latencies[i]) / window, "cpu_s": cpu_marks[i + 1] - cpu_marks[i]}
               for i in range(len(plan))]
    out = []
    for s in range(len(urls)):
        mine = [i for i in range(len(plan)) if plan[i] == s]
        lat = sorted(x for i in mine for x in latencies[i])
        cpu = sum(windows[i]["cpu_s"] for i in mine)
        out.append({"requests": len(lat), "rps": len(lat) / (window * len(mine)),
                    "p50_ms": quantile_ms(lat, 0.50), "p99_ms": quantile_ms(lat, 0.99),
                    "errors": errors[s],
                    "cpu_s": cpu, "cpu_ms_per_request": cpu / max(1, len(lat)) * 1000})
    print(json.dumps(out[0] if len(urls) == 1 else {"servers": out, "windows": windows}))


if __name__ == "__main__":
    main()
