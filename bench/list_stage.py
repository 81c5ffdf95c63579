"""Only `make bench`'s list stage (``bench.run.list_catalog``), several rounds on one stack:

    .venv/bin/python bench/list_stage.py [--products 1000000] [--rounds 3]
        [--page-sizes 10000,500] [--baseline REF [--baseline-page-size 500]]

A fresh stack (1 catalog web process, ``CATALOG_THROTTLE_ANON=1000000/minute``, as `make bench`
runs it), ``--products`` live catalog products written with SQL (the rows the anti-entropy
stage leaves), then ``--rounds`` rounds of the list stage, one run per page size (the API's
cursor pages and the SQL scan use the same one). With ``--baseline REF`` a second catalog web
process runs the code of git ``REF`` (exported to a temporary directory) on the same
database, and each round lists through it too: old and new code measured in the same run.
The order of the runs alternates from round to round. Prints one line per run and writes the
figures to bench/results/list-<timestamp>.json (after each run)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run import LIST_PAGE, list_catalog, log  # noqa: E402
from harness import processes  # noqa: E402
from harness.stack import Stack, http_up, procfile, running_stack  # noqa: E402
from harness.waiting import wait_until  # noqa: E402

AT = "'2026-01-01T00:00:00Z'::timestamptz"


def fill(stack: Stack, n: int) -> None:
    stack.sql("catalog", "TRUNCATE catalog_product")
    stack.sql("catalog", "INSERT INTO catalog_product (id, title, image, price, description, "
                         "version, updated_at, deleted, last_event_id, applied_at, last_trace_id) "
                         "SELECT g, 'AE ' || g, '', (g %% 1000) + 0.99, 'anti-entropy bench', 1, "
                         f"{AT}, false, md5(g::text)::uuid, now(), '' "
                         "FROM generate_series(1, %s) g", [n])
    stack.sql("catalog", "ANALYZE catalog_product")


def baseline_web(stack: Stack, ref: str, where: Path) -> tuple[Stack, processes.Proc]:
    """A catalog web process running git ``ref``'s code on the stack's database."""
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    port = processes.free_port()
    env = stack.env | {"CATALOG_PORT": str(port)}
    proc = processes.Proc(f"{stack.name}-catalog-baseline", ["sh", "-c", procfile()["catalog"]],
                          env, cwd=where)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_up(f"{url}/api/products/"), timeout=60, message="baseline web up")
    return dataclasses.replace(stack, catalog=url, procs={}), proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="REF", help="also list through REF's code")
    parser.add_argument("--page-sizes", default=str(LIST_PAGE),
                        help="comma-separated page sizes of this code's runs")
    parser.add_argument("--baseline-page-size", type=int, default=500,
                        help="page size for the baseline (its own maximum may be lower)")
    args = parser.parse_args()
    overrides = {"CATALOG_WEB_WORKERS": "1", "CATALOG_THROTTLE_ANON": "1000000/minute"}
    runs: list[dict] = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = REPO / "bench" / "results" / f"list-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with running_stack("listbench", start=("catalog",), overrides=overrides) as stack, \
            tempfile.TemporaryDirectory(prefix="list-baseline-") as tmp:
        log(f"filling catalog_product with {args.products:,} products")
        fill(stack, args.products)
        old = None
        if args.baseline:
            old, old_proc = baseline_web(stack, args.baseline, Path(tmp))
        try:
            configs = [("new", stack, int(size)) for size in args.page_sizes.split(",")]
            if old is not None:
                configs.append(("old", old, args.baseline_page_size))
            for i in range(args.rounds):
                for name, which, size in (configs if i % 2 == 0 else configs[::-1]):
                    t0 = time.perf_counter()
                    r = list_catalog(which, page_size=size) | {"code": name, "round": i + 1}
                    runs.append(r)
                    out.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2))
                    log(f"round {i + 1} {name}: {r['products']:,} products, {r['pages']:,} pages "
                        f"of {r['page_size']}: API {r['api_s']:.2f} s, SQL {r['sql_s']:.2f} s, "
                        f"{r['vs_sql']:.2f}x; cursor page {r['cursor_page_ms']:.2f} ms, "
                        f"?page={r['deep_page']} {r['deep_page_ms']:.1f} ms "
                        f"({time.perf_counter() - t0:.0f} s)")
        finally:
            if old is not None:
                old_proc.stop()
                shutil.rmtree(tmp, ignore_errors=True)
    log(f"results: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
