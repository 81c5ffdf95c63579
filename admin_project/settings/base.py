"""Admin project settings shared by every environment. Everything comes from the environment
(variables prefixed ADMIN_, plus shared infrastructure such as CELERY_BROKER_URL), read through
one django-environ ``env``; a ``.env`` file at the repository root is read if present. What the
catalog's settings share is in ``common.settings``."""

import tempfile
from pathlib import Path

from common import settings as common
from common.logs import logging_config
from common.settings import *  # noqa: F403  (i18n, time zone, static files, Celery's JSON basics)

REPO_DIR = Path(__file__).resolve().parents[2]
BASE_DIR = REPO_DIR / "admin_project"

env = common.env_read(REPO_DIR)

SECRET_KEY = env("ADMIN_SECRET_KEY")
DEBUG = env.bool("ADMIN_DEBUG", default=False)
ALLOWED_HOSTS = env.list("ADMIN_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("ADMIN_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served locally (no CDN)
    "rest_framework.authtoken",
    "admin_project.products",
    "admin_project.outbox",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "common.trace.TraceIdMiddleware",
    "common.errors.HostileInputMiddleware",
    "common.errors.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "admin_project.urls"
WSGI_APPLICATION = "admin_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = common.databases(env, "ADMIN",
                             default_url="postgres://postgres@127.0.0.1:5432/products_admin")
WEB_DB_DEADLINE_SECONDS = common.web_db_deadline(env, "ADMIN")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

STATIC_ROOT = REPO_DIR / "var" / "static" / "admin_project"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Logged in AND holding the model permission (add/change/delete_product) to write.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.DjangoModelPermissions"],
    "DEFAULT_PAGINATION_CLASS": "common.pagination.PageOrCursorPagination",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer",
                                 "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_PARSER_CLASSES": ["common.parsers.JSONParser",
                               "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # the client address the throttles count by: X-Forwarded-For is believed only from this many
    # reverse proxies in front (0: never; a client could name any address it likes)
    "NUM_PROXIES": env.int("ADMIN_NUM_PROXIES", default=0),
    # Counted in the shared cache (Redis, ADMIN_CACHE_URL): the limits hold across processes.
    "DEFAULT_THROTTLE_CLASSES": ["common.throttling.AnonRateThrottle",
                                 "common.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"anon": env("ADMIN_THROTTLE_ANON", default="30/minute"),
                               "user": env("ADMIN_THROTTLE_USER", default="6000/minute"),
                               # password attempts, per address and per account name: the token
                               # endpoint and the Django admin's login form
                               "login": env("ADMIN_THROTTLE_LOGIN", default="10/minute")},
}
CACHES = common.caches(env, "ADMIN", default_db=0)
SPECTACULAR_SETTINGS = common.spectacular(
    title="Product admin API",
    description="Create, update and delete products. Every change is published as a product "
                "event (docs/events.md). Writes need a token (POST /api/auth/token/) or a "
                "session, and the Django model permission for the change.",
    SERVE_PERMISSIONS=["rest_framework.permissions.AllowAny"],
    COMPONENT_SPLIT_REQUEST=True,
)
# /metrics: scrape-time collectors added to the process metrics.
METRICS_COLLECTORS = ["admin_project.outbox.metrics.OutboxCollector"]

# --- Celery: the admin only publishes (the relay); it never runs a worker. ---
CELERY_BROKER_URL = common.broker_url(env)  # per-process broker users: see broker_url
# Publisher confirms on every channel, and socket timeouts so a broker blocked by a memory or
# disk alarm makes a publish fail (row stays pending) instead of hanging the relay.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "confirm_publish": True,
    "connect_timeout": env.float("ADMIN_RELAY_CONNECT_TIMEOUT", default=5.0),
    "read_timeout": env.float("ADMIN_RELAY_IO_TIMEOUT", default=10.0),
    "write_timeout": env.float("ADMIN_RELAY_IO_TIMEOUT", default=10.0),
}
# The relay only publishes and never drains events, so py-amqp could not answer AMQP heartbeats:
# none on this connection. A dead socket is caught by the I/O and confirm timeouts instead.
CELERY_BROKER_HEARTBEAT = 0

# --- Outbox relay ---
RELAY_MAX_EVENTS_PER_MESSAGE = env.int("ADMIN_RELAY_MAX_EVENTS_PER_MESSAGE", default=100)
RELAY_CLAIM_SIZE = env.int("ADMIN_RELAY_CLAIM_SIZE", default=1000)
# Bytes: the largest message body the relay sends (keep it at or below the broker's
# max_message_size, 128 MiB by default; a lower broker limit is learned when it refuses one), and
# about how much payload one claim loads into the relay's memory.
RELAY_MAX_MESSAGE_BYTES = env.int("ADMIN_RELAY_MAX_MESSAGE_BYTES", default=1_048_576)
RELAY_CLAIM_MAX_BYTES = env.int("ADMIN_RELAY_CLAIM_MAX_BYTES", default=8_388_608)
RELAY_SWEEP_SECONDS = env.float("ADMIN_RELAY_SWEEP_SECONDS", default=1.0)
# When busy (published within the last 50 ms), wait this long after a wake-up so that more
# commits share one claim and one message. 0 disables.
RELAY_LINGER_SECONDS = env.float("ADMIN_RELAY_LINGER_SECONDS", default=0.005)
# ... multiplied by the size of the last batch, up to this cap.
RELAY_LINGER_MAX_SECONDS = env.float("ADMIN_RELAY_LINGER_MAX_SECONDS", default=0.015)
RELAY_CONFIRM_TIMEOUT = env.float("ADMIN_RELAY_CONFIRM_TIMEOUT", default=10.0)
RELAY_MAX_BACKOFF_SECONDS = env.float("ADMIN_RELAY_MAX_BACKOFF_SECONDS", default=30.0)
# SIGTERM/SIGINT: how long the relay may take to finish what it is doing before it exits anyway
RELAY_STOP_GRACE_SECONDS = env.float("ADMIN_RELAY_STOP_GRACE_SECONDS", default=5.0)
OUTBOX_RETENTION_HOURS = env.float("ADMIN_OUTBOX_RETENTION_HOURS", default=168.0)
# Liveness: the relay rewrites this file every loop (~1 s); `manage.py relay --check` reads it.
RELAY_HEARTBEAT_FILE = env("ADMIN_RELAY_HEARTBEAT_FILE",
                           default=str(Path(tempfile.gettempdir()) / "admin-relay.heartbeat"))
# The relay's Prometheus exporter, host:port ("" turns it off).
RELAY_METRICS_BIND = env("ADMIN_RELAY_METRICS_BIND", default="127.0.0.1:9101")
# anti-entropy (admin_project/products/antientropy.py), run by the relay: every N seconds compare
# the catalog's copy by range digests and repair drift through the outbox; 0 turns it off
RECONCILE_EVERY_SECONDS = env.float("ADMIN_RECONCILE_EVERY_SECONDS", default=300.0)
# a check's time budget (the relay's: at most its interval); in flight: pending in the outbox, or
# sent less than GRACE seconds ago (not repaired); repairs per check, and the outbox backlog above
# which a check writes none
ANTIENTROPY_MAX_SECONDS = env.float("ADMIN_ANTIENTROPY_MAX_SECONDS", default=240.0)
ANTIENTROPY_GRACE_SECONDS = env.float("ADMIN_ANTIENTROPY_GRACE_SECONDS", default=600.0)
ANTIENTROPY_MAX_REPAIRS = env.int("ADMIN_ANTIENTROPY_MAX_REPAIRS", default=10_000)
ANTIENTROPY_MAX_PENDING = env.int("ADMIN_ANTIENTROPY_MAX_PENDING", default=20_000)
# empty or unset: the catalog of `make run` on this host, at CATALOG_PORT
CATALOG_URL = (env("CATALOG_URL", default="")
               or f"http://127.0.0.1:{env('CATALOG_PORT', default='8001')}")

LOG_LEVEL = env("ADMIN_LOG_LEVEL", default="INFO")
# "plain" for people, "json" (one object per line) for log shippers; both carry trace_id.
LOG_FORMAT = env("ADMIN_LOG_FORMAT", default="plain")
LOGGING = logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT, quiet={"django.db.backends": "INFO"})
