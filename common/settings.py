"""What the settings of both Django projects share (cookiecutter-django style: each project keeps
``settings/{base,local,test,production}.py`` and reads everything through one django-environ
``env``). ``from common.settings import *`` gives the shared constants (``__all__``); the
functions build what differs only by a project's prefix (``ADMIN``, ``CATALOG``) or by a few
values. The environment variable names they read are a public contract (.env.example)."""

import os
from pathlib import Path

import environ

__all__ = [
    "LANGUAGE_CODE", "TIME_ZONE", "USE_I18N", "USE_TZ", "DEFAULT_AUTO_FIELD",
    "STATIC_URL", "STORAGES", "WHITENOISE_USE_FINDERS",
    "CELERY_TASK_SERIALIZER", "CELERY_ACCEPT_CONTENT", "CELERY_RESULT_BACKEND",
    "CELERY_TASK_IGNORE_RESULT", "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP",
    "DEFAULT_EXCEPTION_REPORTER", "DEFAULT_EXCEPTION_REPORTER_FILTER",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "static/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
# No secret in any response: the DEBUG error page blanks passwords, keys and URL credentials.
DEFAULT_EXCEPTION_REPORTER = "common.errors.SecretsReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "common.errors.SecretsFilter"

# Celery, both projects: JSON only; no result backend, task results are not kept.
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]          # pickle (or anything else) is refused
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True


def env_read(repo_dir: Path) -> environ.Env:
    """The one ``env`` of a project's settings; the repository's ``.env`` is read if present,
    without overriding variables already set in the environment."""
    env = environ.Env()
    if (repo_dir / ".env").is_file():
        env.read_env(str(repo_dir / ".env"), overwrite=False)
    return env


def broker_url(env: environ.Env) -> str:
    """CELERY_BROKER_URL. Celery reads the CELERY_BROKER_URL environment variable even over this
    setting, so per-process broker users are given by setting that variable per process
    (Procfile, compose.yaml)."""
    # an empty value (`CELERY_BROKER_URL="$AUDIT_BROKER_URL"` with that one unset) is unset: kombu
    # would otherwise connect to its own default (guest@localhost, vhost /), not the broker
    return env("CELERY_BROKER_URL", default="") or "amqp://guest:guest@127.0.0.1:5672//"


def subscriber_broker_urls(env: environ.Env, default: str, names) -> dict[str, str]:
    """The broker URL each subscriber ``names`` names uses for its operator commands (`dlq`,
    `topology upgrade`): ``<SUBSCRIBER>_BROKER_URL`` (that worker's own user) when set, else
    ``default``."""
    return {name: env(f"{name.upper()}_BROKER_URL", default="") or default for name in names}


def databases(env: environ.Env, prefix: str, default_url: str,
              lock_timeout_seconds: float = 0.0) -> dict:
    """DATABASES: ``<prefix>_DATABASE_URL``, with persistent connections
    (``<prefix>_DB_CONN_MAX_AGE`` seconds) that are health-checked before reuse, and every wait
    bounded (docs/operations.md, "A black-holed database"): libpq's connect timeout, TCP
    keepalives and tcp_user_timeout, the server's statement_timeout and
    idle_in_transaction_session_timeout, and the backend's own answer deadline
    (``common.postgresql``; ``<prefix>_DB_ANSWER_TIMEOUT_SECONDS``, 0 = none); and the server's
    lock_timeout (``<prefix>_DB_LOCK_TIMEOUT_SECONDS``, default ``lock_timeout_seconds``, 0 =
    none): how long a statement waits for a row or table lock before it fails."""
    default = env.db_url(f"{prefix}_DATABASE_URL", default=default_url)
    if default["ENGINE"] == "django.db.backends.postgresql":
        default["ENGINE"] = "common.postgresql"
    default["CONN_MAX_AGE"] = env.int(f"{prefix}_DB_CONN_MAX_AGE", default=60)
    default["CONN_HEALTH_CHECKS"] = True
    default["ANSWER_TIMEOUT"] = env.float(f"{prefix}_DB_ANSWER_TIMEOUT_SECONDS", default=45.0)

    def ms(name: str, default_seconds: float) -> int:
        return int(env.float(name, default=default_seconds) * 1000)

    statement_ms = ms(f"{prefix}_DB_STATEMENT_TIMEOUT_SECONDS", 30.0)
    idle_tx_ms = ms(f"{prefix}_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS", 60.0)
    lock_ms = ms(f"{prefix}_DB_LOCK_TIMEOUT_SECONDS", lock_timeout_seconds)
    default.setdefault("OPTIONS", {}).update({
        "connect_timeout": env.int(f"{prefix}_DB_CONNECT_TIMEOUT_SECONDS", default=5),
        "keepalives": 1,
        "keepalives_idle": env.int(f"{prefix}_DB_KEEPALIVES_IDLE_SECONDS", default=10),
        "keepalives_interval": env.int(f"{prefix}_DB_KEEPALIVES_INTERVAL_SECONDS", default=5),
        "keepalives_count": env.int(f"{prefix}_DB_KEEPALIVES_COUNT", default=3),
        "tcp_user_timeout": ms(f"{prefix}_DB_TCP_USER_TIMEOUT_SECONDS", 30.0),
        "options": (f"-c statement_timeout={statement_ms} "
                    f"-c idle_in_transaction_session_timeout={idle_tx_ms}"
                    + (f" -c lock_timeout={lock_ms}" if lock_ms > 0 else "")),
    })
    return {"default": default}


def web_db_deadline(env: environ.Env, prefix: str) -> float:
    """WEB_DB_DEADLINE_SECONDS: how long all of a web request's database waits may take
    together (``common.errors.DatabaseUnavailableMiddleware``): 5 s less than the time gunicorn
    gives a request before it kills the worker (``<prefix>_WEB_TIMEOUT_SECONDS``, 30, read by
    common/gunicorn_conf.py too), so that a database that stops answering gets the client a
    503 in time, not a killed worker and a reset connection."""
    return max(1.0, env.float(f"{prefix}_WEB_TIMEOUT_SECONDS", default=30.0) - 5.0)


def caches(env: environ.Env, prefix: str, default_db: int) -> dict:
    """CACHES: Redis at ``<prefix>_CACHE_URL`` (shared by every process and host of the
    project: the API throttles count there), with short socket timeouts."""
    url = env(f"{prefix}_CACHE_URL", default=f"redis://127.0.0.1:6379/{default_db}")
    return {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
        "KEY_PREFIX": prefix.lower(),
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }}


def spectacular(title: str, description: str, **extra) -> dict:
    """SPECTACULAR_SETTINGS: the OpenAPI schema and its UIs, served from local files
    (drf_spectacular_sidecar, no CDN), errors documented by ``common.openapi``."""
    return {
        "TITLE": title,
        "DESCRIPTION": description,
        "VERSION": "1.0.0",
        "SERVE_INCLUDE_SCHEMA": False,
        "SWAGGER_UI_DIST": "SIDECAR",
        "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
        "REDOC_DIST": "SIDECAR",
        "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                                 "common.openapi.error_responses"],
        **extra,
    }


def production(env: environ.Env, prefix: str) -> dict:
    """The production hardening (``globals().update(production(env, PREFIX))``): no DEBUG,
    HTTPS-only cookies, HSTS. Passes ``manage.py check --deploy --fail-level WARNING`` with its
    defaults; compose.yaml turns the HTTPS settings off for a plain-HTTP localhost demo."""
    return {
        "DEBUG": False,
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
        "SECURE_SSL_REDIRECT": env.bool(f"{prefix}_SECURE_SSL_REDIRECT", default=True),
        # Probes and scrapes come over plain HTTP from inside the network.
        "SECURE_REDIRECT_EXEMPT": [r"^healthz$", r"^readyz$", r"^metrics$"],
        "SESSION_COOKIE_SECURE": env.bool(f"{prefix}_SECURE_COOKIES", default=True),
        "CSRF_COOKIE_SECURE": env.bool(f"{prefix}_SECURE_COOKIES", default=True),
        "SECURE_HSTS_SECONDS": env.int(f"{prefix}_SECURE_HSTS_SECONDS", default=31536000),
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": env.bool(f"{prefix}_SECURE_HSTS_INCLUDE_SUBDOMAINS",
                                                   default=True),
        "SECURE_HSTS_PRELOAD": env.bool(f"{prefix}_SECURE_HSTS_PRELOAD", default=True),
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
    }


def test_environ(prefix: str, **defaults: str) -> None:
    """Defaults for a pytest session, set before the project's base settings are imported: a
    throwaway ``<prefix>_SECRET_KEY`` and ``<prefix>_<NAME>`` for each of ``defaults`` (e.g.
    throttle rates no test reaches). Variables already set win."""
    os.environ.setdefault(f"{prefix}_SECRET_KEY", "test-only-not-secret")
    for name, value in defaults.items():
        os.environ.setdefault(f"{prefix}_{name}", value)


def test(settings: dict) -> dict:
    """The test overrides of a project's base settings (``globals().update(test(globals()))``):
    no DEBUG, no persistent database connections, Django's plain static files storage and no
    whitenoise middleware."""
    databases = settings["DATABASES"]
    storages = settings["STORAGES"]
    return {
        "DEBUG": False,
        "DATABASES": {**databases, "default": {**databases["default"], "CONN_MAX_AGE": 0}},
        "STORAGES": {**storages, "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}},
        "MIDDLEWARE": [m for m in settings["MIDDLEWARE"] if "whitenoise" not in m],
    }
