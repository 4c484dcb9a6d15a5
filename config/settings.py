"""Flowdeploy settings. Every value comes from the environment; .env.example lists them all."""

import ipaddress
from pathlib import Path

import dj_database_url

from django.core.exceptions import ImproperlyConfigured

from config.env import envbool, envint, envlist, envpath, envstr
from serving import secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = envpath("FLOWDEPLOY_DATA_DIR", BASE_DIR / "var")

DEBUG = envbool("DJANGO_DEBUG", False)
# DJANGO_SECRET_KEY, else the key file `make run` creates (serving/secret_key.py); never a built-in default.
try:
    SECRET_KEY = secret_key.find()
except secret_key.SecretKeyError as exc:
    raise ImproperlyConfigured(str(exc)) from None
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "workspace",
    "flows",
    "endpoints",
    "wizard",
    "api",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "workspace.audit.SourceAddressMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "endpoints.middleware.ProviderErrorMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "workspace.context_processors.notifications",
            ],
            "builtins": ["flows.templatetags.flow_extras"],
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(envstr("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}", conn_max_age=60)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The studio, the worker and beat share one file: WAL and a busy timeout keep them out of each other's way.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "flows:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = True

DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# Redis and Celery. State lives in the database; Celery only carries the work.
REDIS_URL = envstr("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL") or REDIS_URL
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3 * 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = envstr("FLOWDEPLOY_QUEUE", "flowdeploy")
# Test and bulk runs go to "<FLOWDEPLOY_QUEUE>-runs", served by a worker of their own, so provisioning
# and crash recovery never wait behind a long run (config/celery.py).
CELERY_TASK_ROUTES = ("config.celery.route_task",)

# Flowdeploy.
# Encrypts connection secrets and signs scoring tokens; derived from SECRET_KEY when empty.
FLOWDEPLOY_SECRET_KEY = envstr("FLOWDEPLOY_SECRET_KEY").strip()
try:
    secret_key.refuse_public(FLOWDEPLOY_SECRET_KEY, "FLOWDEPLOY_SECRET_KEY")
except secret_key.SecretKeyError as exc:
    raise ImproperlyConfigured(str(exc)) from None
FLOWDEPLOY_RUNTIME_DIR = envpath("FLOWDEPLOY_RUNTIME_DIR", Path.home() / ".cache" / "flowdeploy" / "runtime")
FLOWDEPLOY_FLOWS_DIR = DATA_DIR / "flows"
FLOWDEPLOY_RUNS_DIR = DATA_DIR / "runs"
FLOWDEPLOY_MAX_UPLOAD_BYTES = envint("FLOWDEPLOY_MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1024)
FLOWDEPLOY_TEST_RUN_TIMEOUT = envint("FLOWDEPLOY_TEST_RUN_TIMEOUT", 300, minimum=1)
FLOWDEPLOY_ENV_BUILD_TIMEOUT = envint("FLOWDEPLOY_ENV_BUILD_TIMEOUT", 1800, minimum=30)
# A bulk run stops when one line takes longer than this (loading the flow counts as the first line)...
FLOWDEPLOY_BULK_LINE_TIMEOUT = envint("FLOWDEPLOY_BULK_LINE_TIMEOUT", 300, minimum=1)
# ...or when the whole run takes longer than this. With the environment build it must stay under the
# broker's visibility timeout, or Redis would hand the run to a second worker while the first still runs it.
FLOWDEPLOY_BULK_RUN_TIMEOUT = envint("FLOWDEPLOY_BULK_RUN_TIMEOUT", 7200, minimum=1)
_visibility_timeout = CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
_longest_bulk_task = FLOWDEPLOY_BULK_RUN_TIMEOUT + FLOWDEPLOY_ENV_BUILD_TIMEOUT
if _longest_bulk_task >= _visibility_timeout:
    raise ImproperlyConfigured(
        "FLOWDEPLOY_BULK_RUN_TIMEOUT + FLOWDEPLOY_ENV_BUILD_TIMEOUT must stay under "
        f"{_visibility_timeout} seconds (the broker's visibility timeout)."
    )
# Admin only: let flows' requirements.txt name other package sources (index options, URLs, VCS links,
# -e); -r/-c, local paths and file: URLs stay refused (runtime/requirements_policy.py).
FLOWDEPLOY_ALLOW_REQUIREMENT_SOURCES = envbool("FLOWDEPLOY_ALLOW_REQUIREMENT_SOURCES", False)
FLOWDEPLOY_SAMPLES_DIR = envpath("FLOWDEPLOY_SAMPLES_DIR", BASE_DIR / "samples")
FLOWDEPLOY_DEPLOYMENTS_DIR = DATA_DIR / "deployments"
# Where instance processes fetch their connections (promptflow's HTTP connection provider) and where
# clients reach the scoring gateway.
FLOWDEPLOY_STUDIO_URL = envstr("FLOWDEPLOY_STUDIO_URL", "http://127.0.0.1:8000").rstrip("/")
FLOWDEPLOY_GATEWAY_URL = envstr("FLOWDEPLOY_GATEWAY_URL", "http://127.0.0.1:8001").rstrip("/")
FLOWDEPLOY_MAX_INSTANCES = envint("FLOWDEPLOY_MAX_INSTANCES", 20, minimum=1)
# Memory the local provider may hand out to instances; 0 means 80% of this machine's memory.
FLOWDEPLOY_LOCAL_CAPACITY_MIB = envint("FLOWDEPLOY_LOCAL_CAPACITY_MIB", 0, minimum=0)
FLOWDEPLOY_PROBE_TIMEOUT = envint("FLOWDEPLOY_PROBE_TIMEOUT", 120, minimum=5)
# An instance fetches its connections once, while its app loads (before it answers the probe): its
# connection-provider token is minted at each start and expires after this many seconds.
FLOWDEPLOY_PROVIDER_TOKEN_LIFETIME = envint(
    "FLOWDEPLOY_PROVIDER_TOKEN_LIFETIME", FLOWDEPLOY_PROBE_TIMEOUT + 60, minimum=10
)
# Where instances call the connection provider from: loopback for `make run`, the compose network in containers.
FLOWDEPLOY_PROVIDER_ALLOWED_NETWORKS = envlist("FLOWDEPLOY_PROVIDER_ALLOWED_NETWORKS") or ["127.0.0.0/8", "::1/128"]
for _network in FLOWDEPLOY_PROVIDER_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"FLOWDEPLOY_PROVIDER_ALLOWED_NETWORKS must list networks such as 127.0.0.0/8, not {_network!r}"
        ) from None
FLOWDEPLOY_MAX_REQUEST_BYTES = envint("FLOWDEPLOY_GATEWAY_MAX_BODY_BYTES", 5 * 1024 * 1024, minimum=1024)
# Inference data collection (docs/monitoring.md): the gateway writes here, the studio reads and expires it.
# The gateway finds the same folder from the same variables (serving/collector.py).
FLOWDEPLOY_DATA_COLLECTION_DIR = envpath("FLOWDEPLOY_DATA_COLLECTION_DIR", DATA_DIR / "data-collection")
# Retention and rotation (endpoints/retention.py), run by beat every FLOWDEPLOY_RETENTION_INTERVAL seconds.
FLOWDEPLOY_RETENTION_INTERVAL = envint("FLOWDEPLOY_RETENTION_INTERVAL", 60, minimum=1)
# Instance logs and make run's logs past FLOWDEPLOY_LOG_MAX_BYTES are emptied; their end goes to <name>.1.
FLOWDEPLOY_LOG_MAX_BYTES = envint("FLOWDEPLOY_LOG_MAX_BYTES", 10 * 1024 * 1024, minimum=4096)
FLOWDEPLOY_LOG_KEEP_BYTES = envint("FLOWDEPLOY_LOG_KEEP_BYTES", 1024 * 1024, minimum=0)
if FLOWDEPLOY_LOG_KEEP_BYTES >= FLOWDEPLOY_LOG_MAX_BYTES:
    raise ImproperlyConfigured("FLOWDEPLOY_LOG_KEEP_BYTES must be smaller than FLOWDEPLOY_LOG_MAX_BYTES.")
FLOWDEPLOY_STOPPED_INSTANCE_RETENTION_DAYS = envint("FLOWDEPLOY_STOPPED_INSTANCE_RETENTION_DAYS", 7, minimum=0)
FLOWDEPLOY_LAYER_RETENTION_DAYS = envint("FLOWDEPLOY_LAYER_RETENTION_DAYS", 30, minimum=0)
FLOWDEPLOY_BUILD_LOG_RETENTION_DAYS = envint("FLOWDEPLOY_BUILD_LOG_RETENTION_DAYS", 7, minimum=0)
FLOWDEPLOY_RUN_DATA_RETENTION_DAYS = envint("FLOWDEPLOY_RUN_DATA_RETENTION_DAYS", 30, minimum=0)
FLOWDEPLOY_EVENTS_PER_DEPLOYMENT = envint("FLOWDEPLOY_EVENTS_PER_DEPLOYMENT", 500, minimum=10)

# Sign-in with Microsoft Entra ID (docs/sign-in.md), beside local accounts, when tenant, client id and secret are set.
FLOWDEPLOY_ENTRA_TENANT_ID = envstr("FLOWDEPLOY_ENTRA_TENANT_ID").strip()
FLOWDEPLOY_ENTRA_CLIENT_ID = envstr("FLOWDEPLOY_ENTRA_CLIENT_ID").strip()
FLOWDEPLOY_ENTRA_CLIENT_SECRET = envstr("FLOWDEPLOY_ENTRA_CLIENT_SECRET").strip()
# The OpenID Connect authority (the issuer) of another cloud or provider, https only; default:
# https://login.microsoftonline.com/<tenant>/v2.0
FLOWDEPLOY_ENTRA_AUTHORITY = envstr("FLOWDEPLOY_ENTRA_AUTHORITY").strip().rstrip("/")
if FLOWDEPLOY_ENTRA_AUTHORITY and not FLOWDEPLOY_ENTRA_AUTHORITY.startswith("https://"):
    raise ImproperlyConfigured(
        f"FLOWDEPLOY_ENTRA_AUTHORITY must be an https:// URL, not {FLOWDEPLOY_ENTRA_AUTHORITY!r}"
    )
# A CA file to trust for the authority (a provider with a private CA); default: the system's CAs.
FLOWDEPLOY_ENTRA_CA_BUNDLE = envstr("FLOWDEPLOY_ENTRA_CA_BUNDLE").strip()
# Project roles from the ID token's app roles or groups, given at each sign-in (docs/sign-in.md): comma-separated
# <role or group id>=<project>:<owner|contributor|reader>, e.g. "Flowdeploy.Admins=default:owner".
FLOWDEPLOY_ENTRA_ROLE_MAP = envstr("FLOWDEPLOY_ENTRA_ROLE_MAP").strip()
# Reverse proxies whose X-Forwarded-For the audit log believes for the caller's address (addresses or networks).
FLOWDEPLOY_TRUSTED_PROXIES = envlist("FLOWDEPLOY_TRUSTED_PROXIES")
for _network in FLOWDEPLOY_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"FLOWDEPLOY_TRUSTED_PROXIES must list addresses or networks such as 10.0.0.5, not {_network!r}"
        ) from None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("FLOWDEPLOY_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}

CELERY_BEAT_SCHEDULE = {
    "fail-stale-runs": {"task": "flows.tasks.fail_stale_runs", "schedule": 60.0},
    "reconcile-instances": {"task": "endpoints.tasks.reconcile", "schedule": 5.0},
    "data-collection-retention": {"task": "monitoring.tasks.remove_expired_data", "schedule": 600.0},
    "data-collection-policy": {"task": "monitoring.tasks.publish_collection_policy", "schedule": 60.0},
    "retention": {"task": "endpoints.tasks.retain", "schedule": float(FLOWDEPLOY_RETENTION_INTERVAL)},
    # Request metrics (docs/monitoring.md): the gateway's records into the studio, instances' CPU and memory.
    "request-records-ingest": {"task": "monitoring.tasks.ingest_request_records", "schedule": 5.0},
    "instance-samples": {"task": "monitoring.tasks.sample_instances", "schedule": 15.0},
    "request-records-retention": {"task": "monitoring.tasks.remove_old_request_records", "schedule": 600.0},
    # What Azure says of the Azure ML deployments believed Succeeded (docs/azure.md).
    "watch-azure-deployments": {"task": "endpoints.tasks.watch_azure", "schedule": 60.0},
}
