"""`make bench` keeps working: a tiny run of every scenario. Speed is never asserted here."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_runs_every_scenario_on_a_tiny_n():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["BENCH_SMALL"] = "1"
    before = set((REPO / "bench" / "results").glob("*.json"))
    result = subprocess.run([sys.executable, "bench/run.py"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for figure in ("catalog drain, Celery, 1 process", "seed-style consumer", "relay",
                   "latency at 200/s", "HTTP create, events seed-inline", "resync of",
                   "worker RSS"):
        assert figure in result.stdout, figure
    (new,) = set((REPO / "bench" / "results").glob("*.json")) - before
    data = json.loads(new.read_text())
    assert data["small"] is True and data["drain"]["seed"]["events"] == data["n"]
    assert new.with_suffix(".png").stat().st_size > 10_000
    new.unlink()
    new.with_suffix(".png").unlink()
