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
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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
}
