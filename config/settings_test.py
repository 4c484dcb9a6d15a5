"""Settings for the test suite: config.settings with a data folder and a Celery queue of its own.

The queue name carries the process id, so a `make run` worker on the same Redis never takes
the tests' tasks, and the test worker never takes a user's.
"""

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
# A data folder per test session (its database, snapshots and instance folders), so two sessions on
# one machine never see each other's files or processes.
os.environ.setdefault("FLOWDEPLOY_DATA_DIR", str(_ROOT / "var" / "test" / f"session-{os.getpid()}"))
os.environ.setdefault("FLOWDEPLOY_QUEUE", f"flowdeploy-test-{os.getpid()}")
os.environ.setdefault("DJANGO_SECRET_KEY", "flowdeploy-test-secret-key")
# A Redis database of its own, so test endpoints never reach the routing of a running studio.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")

from config.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # One file per test session, so two sessions on one machine never share a database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-db-{os.getpid()}.sqlite3")}  # noqa: F405
DATA_DIR.mkdir(parents=True, exist_ok=True)  # noqa: F405
