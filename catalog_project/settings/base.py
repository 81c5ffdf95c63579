"""Catalog project settings shared by every environment (variables prefixed CATALOG_, plus shared
infrastructure such as CELERY_BROKER_URL), read through one django-environ ``env``; a ``.env``
file at the repository root is read if present. The catalog's Celery worker (workers/) uses these
settings too. What the admin's settings share is in ``common.settings``."""

from pathlib import Path

from catalog_project import topology
from common import settings as common
from common.logs import logging_config
from common.settings import *  # noqa: F403  (i18n, time zone, static files, Celery's JSON basics)

REPO_DIR = Path(__file__).resolve().parents[2]
BASE_DIR = REPO_DIR / "catalog_project"

env = common.env_read(REPO_DIR)

SECRET_KEY = env("CATALOG_SECRET_KEY")
DEBUG = env.bool("CATALOG_DEBUG", default=False)
ALLOWED_HOSTS = env.list("CATALOG_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served locally (no CDN)
    "catalog_project.catalog",
    "catalog_project.audit",  # the second subscriber (docs/extending.md)
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "common.trace.TraceIdMiddleware",
    "common.errors.HostileInputMiddleware",
    "common.errors.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "catalog_project.urls"
WSGI_APPLICATION = "catalog_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    },
]

# lock_timeout 2 s: a subscriber's write that meets a locked row fails fast and is held alone
# (workers/handling.py), instead of holding up the writes it shares a transaction with (group
# commit) for the whole statement timeout
DATABASES = common.databases(env, "CATALOG",
                             default_url="postgres://postgres@127.0.0.1:5432/products_catalog",
                             lock_timeout_seconds=2.0)
WEB_DB_DEADLINE_SECONDS = common.web_db_deadline(env, "CATALOG")

STATIC_ROOT = REPO_DIR / "var" / "static" / "catalog_project"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PAGINATION_CLASS": "common.pagination.PageOrCursorPagination",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer",
                                 "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_PARSER_CLASSES": ["common.parsers.JSONParser"],  # read-only API: nothing else
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # the client address the throttles count by: X-Forwarded-For is believed only from this many
    # reverse proxies in front (0: never; a client could name any address it likes)
    "NUM_PROXIES": env.int("CATALOG_NUM_PROXIES", default=0),
    # Counted in the shared cache (Redis, CATALOG_CACHE_URL): the limit holds across processes.
    "DEFAULT_THROTTLE_CLASSES": ["common.throttling.AnonRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"anon": env("CATALOG_THROTTLE_ANON", default="12000/minute"),
                               # the anti-entropy digests (each reads a range of rows): the
                               # admin's check makes a few dozen requests per run
                               "digests": env("CATALOG_THROTTLE_DIGESTS", default="120/minute")},
}
# digest computations at once across every web process (the others answer 429 + Retry-After), so
# anonymous digest requests never hold all the web workers (docs/operations.md, "Anti-entropy")
DIGESTS_AT_ONCE = env.int("CATALOG_DIGESTS_AT_ONCE", default=1)
CACHES = common.caches(env, "CATALOG", default_db=1)
SPECTACULAR_SETTINGS = common.spectacular(
    title="Product catalog API (read-only)",
    description="The catalog's copy of the products, kept up to date from product events. "
                "Deleted products answer 404.",
)
# /metrics: scrape-time collectors added to the process metrics.
METRICS_COLLECTORS = ["catalog_project.catalog.metrics.CatalogCollector"]

# --- Celery (the catalog worker in workers/catalog.py) ---
CELERY_BROKER_URL = common.broker_url(env)  # per-process broker users: see broker_url
# `dlq --subscriber X` and `topology upgrade --subscriber X` connect as that worker's user
SUBSCRIBER_BROKER_URLS = common.subscriber_broker_urls(env, CELERY_BROKER_URL,
                                                        topology.SUBSCRIBERS)
CELERY_RESULT_SERIALIZER = "json"
# Ack only after the write committed; a worker that dies mid-task gets its messages redelivered.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A task that fails for good is rejected (-> dead-letter queue), never acked and forgotten.
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CATALOG_WORKER_PREFETCH_MULTIPLIER", default=4)
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None   # keep trying while the broker is away
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
CELERY_BROKER_HEARTBEAT = 60
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # No confirm_publish here: it would make every task event (for Flower) wait for a broker
    # round trip. Retries and parked events use a confirming producer (workers/confirming.py).
    "connect_timeout": env.float("CATALOG_BROKER_CONNECT_TIMEOUT", default=5.0),
}
# Bounds of every confirmed publish of the worker (park, retry: workers/confirming.py), of
# `dlq replay` and of `topology upgrade` (docs/operations.md, "During a broker alarm"): each
# socket read/write, and the wait for the broker's confirm, in seconds.
CATALOG_BROKER_CONNECT_TIMEOUT = CELERY_BROKER_TRANSPORT_OPTIONS["connect_timeout"]
CATALOG_BROKER_IO_TIMEOUT = env.float("CATALOG_BROKER_IO_TIMEOUT", default=10.0)
CATALOG_BROKER_CONFIRM_TIMEOUT = env.float("CATALOG_BROKER_CONFIRM_TIMEOUT", default=10.0)
# A park or retry publish that failed (broker blocked or away): the original message is held
# unacked this long (doubled per earlier delivery, capped) and then requeued.
CATALOG_PUBLISH_FAILED_PAUSE = env.float("CATALOG_PUBLISH_FAILED_PAUSE", default=5.0)
CATALOG_PUBLISH_FAILED_PAUSE_MAX = env.float("CATALOG_PUBLISH_FAILED_PAUSE_MAX", default=300.0)
CELERY_TASK_TIME_LIMIT = env.int("CATALOG_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CATALOG_TASK_SOFT_TIME_LIMIT", default=240)
# Celery's Django fixup closes the database connection before and after EVERY task unless this is
# set (CONN_MAX_AGE is ignored in workers): reconnecting cost ~40% of a task. Reuse a connection
# for this many tasks; a broken one is closed on the error and the task retried.
CELERY_DB_REUSE_MAX = env.int("CATALOG_DB_REUSE_MAX", default=1000)
CELERY_WORKER_SEND_TASK_EVENTS = True         # Flower
CELERY_WORKER_HIJACK_ROOT_LOGGER = False      # Django owns logging
CELERY_WORKER_REDIRECT_STDOUTS = False
# Each subscriber worker's retry policy and metrics exporter (CATALOG_RETRY_*,
# CATALOG_WORKER_METRICS_BIND, AUDIT_RETRY_*, AUDIT_WORKER_METRICS_BIND) are read by its own
# app module, workers/catalog.py and workers/audit.py: the web app has no use for them.

LOG_LEVEL = env("CATALOG_LOG_LEVEL", default="INFO")
# "plain" for people, "json" (one object per line) for log shippers; both carry trace_id.
LOG_FORMAT = env("CATALOG_LOG_FORMAT", default="plain")
# Celery's own line per task received and per task succeeded are off: the worker logs one line
# per message itself (what changed, with the trace ids: workers/handling.py), and building three
# lines per message cost its main loop ~5%. Failures and retries are still logged.
LOGGING = logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT,
                         quiet={"celery.worker.strategy": "WARNING",
                                "celery.app.trace": "WARNING"})
