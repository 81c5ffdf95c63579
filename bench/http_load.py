"""A small closed-loop HTTP load client: N threads POST products for S seconds.

    python bench/http_load.py URL TOKEN THREADS SECONDS
    -> JSON {rps, p50_ms, p99_ms, errors, cpu_s, cpu_ms_per_request}
    (cpu: the whole machine's, every process, over the counted window)"""

import http.client
import json
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpu import busy_seconds  # noqa: E402


def main() -> None:
    url, token, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    parts = urlsplit(url)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    warmup_until = time.perf_counter() + 2.0  # fresh gunicorn workers: not counted
    stop_at = warmup_until + seconds
    body = json.dumps({"title": "load", "price": "1.00", "description": "bench"})
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def run():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine, bad = [], 0
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                conn.request("POST", parts.path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 201:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            if t0 >= warmup_until:
                mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    time.sleep(max(0.0, warmup_until - time.perf_counter()))
    cpu0 = busy_seconds()  # the machine's CPU over the counted window, every process included
    time.sleep(max(0.0, stop_at - time.perf_counter()))
    cpu = busy_seconds() - cpu0
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - warmup_until
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(json.dumps({"requests": len(latencies), "rps": len(latencies) / elapsed,
                      "p50_ms": pick(0.50), "p99_ms": pick(0.99), "errors": errors[0],
                      "cpu_s": cpu, "cpu_ms_per_request": cpu / max(1, len(latencies)) * 1000}))


if __name__ == "__main__":
    main()
