"""The operator's alerts (ops/prometheus/alerts.yml) are valid Prometheus rules, fire as meant
(promtool's rule unit tests), cover every scrape job with an "exporter down" alert, and name only
metrics the code exports."""

from __future__ import annotations

import re
import shutil
import subprocess

from ruamel.yaml import YAML

from harness import processes

OPS = processes.REPO / "ops" / "prometheus"


def promtool(*args: str, cwd=OPS) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    assert exe, "promtool (Debian's prometheus package) is missing: `make test` installs it"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_rules_are_valid_and_their_unit_tests_pass():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_scrape_config_is_valid(tmp_path):
    config = (OPS / "prometheus.yml").read_text()
    secret = tmp_path / "flower_password"
    secret.write_text("x")
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/run/secrets/flower_password", str(secret)))
    shutil.copy(OPS / "alerts.yml", tmp_path / "alerts.yml")
    checked = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_scrape_job_has_an_exporter_down_alert_and_every_metric_exists():
    yaml = YAML(typ="safe")
    jobs = [j["job_name"] for j in yaml.load((OPS / "prometheus.yml").read_text())
            ["scrape_configs"]]
    rules = {r["alert"]: r["expr"] for g in yaml.load((OPS / "alerts.yml").read_text())["groups"]
             for r in g["rules"]}
    down = re.search(r'up\{job=~"([^"]+)"\} == 0', rules["ExporterDown"]).group(1)
    for job in jobs:  # (Prometheus anchors label regexes at both ends)
        assert re.fullmatch(down, job) and f'absent(up{{job="{job}"}})' in \
            rules["ExporterAbsent"], job
    # a subscriber's worker job added as docs/extending.md says is covered without a rule edit
    assert re.fullmatch(down, "search-worker")
    assert '.+-worker' in rules["WorkerTargetsLost"]
    code = "\n".join(p.read_text() for d in ("admin_project", "catalog_project", "workers",
                                             "common")
                     for p in (processes.REPO / d).rglob("*.py"))
    for alert, expr in rules.items():
        # every subscriber's metric, by the suffix workers/metrics.py puts after its name
        for suffix in re.findall(r'__name__=~"\.\+_(\w+)"', expr):
            made = re.sub(r"_(total|bucket)$", "", suffix)
            assert f'}}_{made}"' in code, f"{alert}: no <subscriber>_{made} is exported"
        for name in set(re.findall(r"\b([a-z]+_[a-z_]+?)(?:_bucket|_total)?\b(?=[{\s>=<)\[]|$)",
                                   expr)):
            if name in ("up", "absent", "histogram_quantile", "rate", "sum", "by", "le",
                        "time") or not name.startswith(("outbox_", "relay_", "catalog_",
                                                        "antientropy_")):
                continue
            # literally, or built from a subscriber's prefix (f"{name}_event_lag_seconds")
            rest = name.split("_", 1)[1]
            assert f'"{name}' in code or f'}}_{rest}"' in code, \
                f"{alert}: metric {name} is not exported by the code"
