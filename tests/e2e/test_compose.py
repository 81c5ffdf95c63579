"""compose.yaml cannot run here (no Docker engine): validate it against the compose-spec schema,
then check what the schema cannot see."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return YAML(typ="safe").load(COMPOSE.read_text())


def env_example_keys() -> set[str]:
    return {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines()
            if line and not line.startswith("#") and "=" in line}


def test_compose_spec_schema():
    exe = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(exe), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependencies_exist_and_conditions_are_satisfiable(compose):
    services = compose["services"]
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} healthy: no check"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is not a one-shot"


def test_every_variable_is_documented_in_env_example():
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    missing = used - env_example_keys()
    assert not missing, f"used in compose.yaml, missing from .env.example: {sorted(missing)}"


def test_every_env_example_key_is_used_somewhere():
    sources = [COMPOSE, REPO / "Procfile", *REPO.glob("*_project/settings/*.py"),
               *REPO.glob("scripts/*.py"), *REPO.glob("admin_project/**/*.py"),
               *REPO.glob("workers/*.py"), *REPO.glob("common/*.py")]
    text = "\n".join(p.read_text() for p in sources)
    # common/settings.py reads some variables of both projects as f"{prefix}_NAME", and each
    # subscriber worker its settings as subscriber_app(..., prefix="PREFIX") (workers/subscriber.py)
    common = (REPO / "common" / "settings.py").read_text()
    text += "\n".join(f"{project}_{name}" for name in re.findall(r"\{prefix\}_(\w+)", common)
                      for project in ("ADMIN", "CATALOG"))
    policy = (REPO / "workers" / "subscriber.py").read_text()
    text += "\n".join(f"{prefix}_{name}"
                      for prefix in re.findall(r'subscriber_app\([^)]*prefix="(\w+)"', text)
                      for name in re.findall(r"\{prefix\}_(\w+)", policy))
    unused = {k for k in env_example_keys() if k not in text}
    assert not unused, f"documented in .env.example but read nowhere: {sorted(unused)}"


def test_no_default_credentials_and_secrets_required(compose):
    text = COMPOSE.read_text()
    assert "guest" not in text
    for secret in ("POSTGRES_PASSWORD", "RABBITMQ_ADMIN_PASSWORD", "ADMIN_SECRET_KEY",
                   "CATALOG_SECRET_KEY", "FLOWER_BASIC_AUTH", "ADMIN_BROKER_PASSWORD",
                   "CATALOG_BROKER_PASSWORD", "FLOWER_BROKER_PASSWORD"):
        assert re.search(r"\$\{" + secret + r":\?", text), f"{secret} must be required, no default"


def test_referenced_files_and_modules_exist(compose):
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} missing"
        if "build" in svc:
            assert (REPO / svc["build"] / "Dockerfile").is_file()
        command = svc.get("command") or []
        words = " ".join(command).split()
        for i, word in enumerate(words):
            if word.endswith(".py"):
                path = word.rpartition("=")[2]  # --conf=path.py
                assert (REPO / path).is_file(), f"{name}: {path} missing"
            if word.startswith("python:"):  # gunicorn -c python:module
                assert (REPO / (word[7:].replace(".", "/") + ".py")).is_file(), word
            if word == "-A":
                assert (REPO / (words[i + 1].replace(".", "/") + ".py")).is_file()
            if word.endswith(".wsgi"):
                assert (REPO / (word.replace(".", "/") + ".py")).is_file()


def test_rabbitmq_has_fixed_hostname_volume_and_healthcheck(compose):
    rabbit = compose["services"]["rabbitmq"]
    assert rabbit["image"].endswith("-management")
    assert rabbit["hostname"] and rabbit["healthcheck"]["test"]
    assert any(v.endswith(":/var/lib/rabbitmq") for v in rabbit["volumes"])


def test_compose_runs_the_same_processes_as_make_run(compose):
    procfile = (REPO / "Procfile").read_text()
    for service, marker in [("admin", "admin_project.wsgi"), ("catalog", "catalog_project.wsgi"),
                            ("relay", "relay"), ("worker", "worker"), ("flower", "flower")]:
        assert marker in " ".join(compose["services"][service]["command"])
        assert marker in procfile


def test_the_admin_containers_reach_the_catalog_by_its_service_name(compose):
    """reconcile, antientropy and the relay's periodic check read the catalog API: inside a
    container 127.0.0.1:8001 (the .env default for `make run`) is the container itself."""
    for service in ("admin", "relay"):
        env = compose["services"][service]["environment"]
        assert env.get("CATALOG_URL") == "http://catalog:8001", (service, env.get("CATALOG_URL"))
    assert "8001" in " ".join(compose["services"]["catalog"]["command"])


def test_every_web_app_allows_the_host_names_it_is_reached_by_in_compose(compose):
    """Django answers 400 to a Host it does not allow: the scrape config's targets and the
    admin's CATALOG_URL must be in the web apps' ALLOWED_HOSTS as compose sets them (found by an
    outside reading: every scrape of admin:8000 and catalog:8001 was a 400)."""
    env = compose["x-app-env"]

    def allowed(var: str) -> set[str]:
        value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(env[var]))  # the defaults
        return {h.strip() for h in value.split(",") if h.strip()}

    web = {"admin": allowed("ADMIN_ALLOWED_HOSTS"), "catalog": allowed("CATALOG_ALLOWED_HOSTS")}
    prometheus = YAML(typ="safe").load((REPO / "ops" / "prometheus" / "prometheus.yml")
                                       .read_text())
    reached = [target for job in prometheus["scrape_configs"]
               for cfg in job.get("static_configs", []) for target in cfg["targets"]]
    reached.append(env["CATALOG_URL"].split("://", 1)[1])
    checked = 0
    for target in reached:
        host = target.split(":")[0]
        if host in web:
            assert host in web[host], f"{target}: {host} not in its ALLOWED_HOSTS {web[host]}"
            checked += 1
    assert checked >= 3  # admin and catalog scraped, the catalog read by the admin


def test_the_catalog_url_follows_catalog_port_as_env_example_says(tmp_path):
    """.env.example leaves CATALOG_URL empty: the admin then reads the catalog of this host at
    CATALOG_PORT (an explicit URL there used to keep 8001 whatever the port)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_", "CATALOG_"))}
    values = {line.split("=", 1)[0]: line.split("=", 1)[1]
              for line in (REPO / ".env.example").read_text().splitlines()
              if line and not line.startswith("#") and "=" in line}
    assert values["CATALOG_URL"] == ""
    env.update(values, CATALOG_PORT="18001", DJANGO_SETTINGS_MODULE="admin_project.settings.local")
    out = subprocess.run([sys.executable, "-c", "import django; django.setup(); "
                          "from django.conf import settings; print(settings.CATALOG_URL)"],
                         cwd=tmp_path, env=env | {"PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "http://127.0.0.1:18001", out.stdout + out.stderr
