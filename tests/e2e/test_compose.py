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


def interpolate(value: str, variables: dict[str, str]) -> str:
    """compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err},
    ${VAR?err}, $$."""
    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        found = variables.get(name)
        if op == ":-":
            return found or arg
        if op == "-":
            return arg if found is None else found
        if op in (":?", "?"):
            assert found, f"compose would refuse: {arg}"
        return found or ""
    return re.sub(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}", one, value)


def test_migrate_runs_bootstrap_as_the_docs_say(compose):
    """operations.md ("On an upgrade") and extending.md say compose's `migrate` runs
    scripts/bootstrap.py (outside finding 10: it ran the two migrates, ensure_superuser and
    db_roles.py only, so no queue was upgraded and no other project got a database). It does,
    as the broker's owner, after RabbitMQ is up, and every process waits for it."""
    migrate = compose["services"]["migrate"]
    assert migrate["command"][:2] == ["python", "scripts/bootstrap.py"], migrate["command"]
    assert migrate["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "${RABBITMQ_ADMIN_USER" in migrate["environment"]["CELERY_BROKER_URL"]
    for name, svc in compose["services"].items():
        if "command" in svc and svc is not migrate and name not in (
                "rabbitmq", "postgres", "redis", "broker-users", "flower"):
            assert svc["depends_on"]["migrate"]["condition"] == \
                "service_completed_successfully", name
    for doc in ("docs/operations.md", "docs/extending.md"):
        assert re.search(r"compose's `migrate`\s+(service\s+)?runs\s+`scripts/bootstrap\.py`|"
                         r"`scripts/bootstrap\.py`, run by `make run` and by compose's "
                         r"`migrate`", (REPO / doc).read_text()), doc


def test_the_migrate_service_prepares_every_project_and_upgrades_the_queues(compose, tmp_path):
    """compose's `migrate` service, run as compose would run it (its command, its environment
    interpolated from .env.example) against the local PostgreSQL and RabbitMQ: only the host
    names (and, for a run of its own, the database names, the vhost and the role names) are
    replaced. On a copy of the repository with a third Django project: every project's database
    is created and migrated with its own settings, and an outdated queue is upgraded."""
    import os
    import shutil
    import uuid

    from kombu import Connection, Exchange, Queue

    from harness import pg, processes, vhosts

    from .test_extending import repo_copy, rows

    suffix = uuid.uuid4().hex[:8]
    copy = tmp_path / "repo"
    repo_copy(copy)
    toy = f"t{suffix}"  # a subscriber with a Django project of its own (docs/extending.md)
    (copy / f"{toy}_project").mkdir()
    (copy / f"{toy}_project" / "__init__.py").write_text("")
    (copy / f"{toy}_project" / "settings.py").write_text(
        "import environ\n\nenv = environ.Env()\nSECRET_KEY = 'toy'\nUSE_TZ = True\n"
        "INSTALLED_APPS = ['django.contrib.contenttypes']\n"
        f"DATABASES = {{'default': env.db_url('{toy.upper()}_DATABASE_URL')}}\n")
    manage = (copy / "catalog_project" / "manage.py").read_text()
    (copy / f"{toy}_project" / "manage.py").write_text(
        manage.replace("catalog_project.settings.local", f"{toy}_project.settings"))

    dbs = {"products_admin": f"cmp_admin_{suffix}", "products_catalog": f"cmp_catalog_{suffix}"}
    roles = {k: f"cmp_{k.lower()}_{suffix}" for k in (
        "ADMIN_WEB", "ADMIN_RELAY", "CATALOG_WEB", "CATALOG_WORKER", "AUDIT_WORKER")}
    vhost = f"cmp-{suffix}"
    variables = {line.split("=", 1)[0]: line.split("=", 1)[1]
                 for line in (REPO / ".env.example").read_text().splitlines()
                 if line and not line.startswith("#") and "=" in line}
    variables |= {"RABBITMQ_ADMIN_USER": "guest", "RABBITMQ_ADMIN_PASSWORD": "guest",
                  "RABBITMQ_VHOST": vhost, **{f"{k}_DB_USER": v for k, v in roles.items()}}
    migrate = compose["services"]["migrate"]
    environment = {k: interpolate(str(v), variables) for k, v in migrate["environment"].items()}
    for key, value in environment.items():
        for name, local in dbs.items():
            value = value.replace(f"@postgres:5432/{name}", f"@127.0.0.1:5432/{local}")
        value = value.replace("@rabbitmq:5672/", "@127.0.0.1:5672/")
        environment[key] = value.replace("redis://redis:", "redis://127.0.0.1:")
        assert not re.search(r"@(postgres|rabbitmq):|//redis:", environment[key]), key
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env |= variables | environment  # env_file (.env), then the service's environment
    env["PATH"] = f"{processes.VENV_BIN}{os.pathsep}{env['PATH']}"
    command = [shutil.which("python", path=env["PATH"]) if w == "python" else w
               for w in migrate["command"]]

    url = vhosts.vhost_create(vhost)
    try:
        # a queue of an older release (delivery limit 10), with messages
        with Connection(url, connect_timeout=5,
                        transport_options={"confirm_publish": True}) as conn:
            old = Queue("catalog.products", Exchange("products", "topic", durable=True),
                        routing_key="product.#", durable=True,
                        queue_arguments={"x-queue-type": "quorum", "x-delivery-limit": 10})
            old(conn.default_channel).declare()
            conn.Producer().publish(b"kept", exchange="", routing_key="catalog.products",
                                    retry=False)
        out = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "catalog queue: catalog.products upgraded" in out.stdout, out.stdout
        admin_url = pg.database_url(dbs["products_admin"])
        catalog_url = pg.database_url(dbs["products_catalog"])

        def tables(db_url: str) -> set[str]:
            return {r[0] for r in rows(db_url, "SELECT tablename FROM pg_tables "
                                               "WHERE schemaname = 'public'")}

        # each project migrated its own database, with its own (production) settings
        assert {"products_product", "products_outboxevent"} <= tables(admin_url)
        assert {"catalog_product", "audit_productchange"} <= tables(catalog_url)
        assert "catalog_product" not in tables(admin_url)
        # the third project's database, on the catalog's server, created and migrated
        assert "django_content_type" in tables(pg.database_url(f"products_{toy}"))
        # the roles granted, the superuser made
        assert rows(admin_url, "SELECT count(*) FROM auth_user WHERE username = "
                    f"'{variables['DJANGO_SUPERUSER_USERNAME']}'") == [(1,)]
        assert rows(catalog_url, "SELECT has_table_privilege("
                    f"'{roles['CATALOG_WORKER']}', 'catalog_product', 'INSERT')") == [(True,)]
    finally:
        vhosts.vhost_delete(vhost)
        for name in [*dbs.values(), f"products_{toy}"]:
            pg.database_drop(name)
        for role in roles.values():
            pg.role_drop(role)
