"""Server-side render time of the deployment pages with many endpoints (issue 5: < 200 ms with 200).

It builds a throwaway SQLite database with N endpoints, each with two deployments (one live with
two ready instances and a dozen events, one being created), then renders the pages through Django's
test client (middleware, sessions, templates, the bell; no network) and prints the median and p95
in milliseconds and the number of SQL queries per page. It tunes the garbage collector as the studio
does (config/gc_tuning.py); `--default-gc` measures without that. Run by hand:

    .venv/bin/python benchmarks/pages.py [--endpoints 200] [--repeat 30]

Nothing real is deployed: the pages only read rows, which is what is measured.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_SCRATCH = tempfile.mkdtemp(prefix="flowdeploy-bench-pages-")
os.environ["DATABASE_URL"] = f"sqlite:///{_SCRATCH}/bench.sqlite3"
os.environ["FLOWDEPLOY_DATA_DIR"] = _SCRATCH
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from config.gc_tuning import tune_for_serving  # noqa: E402
from endpoints.models import (  # noqa: E402
    Deployment,
    DeploymentEvent,
    DeploymentState,
    Endpoint,
    Instance,
    InstanceState,
)
from flows.models import Flow, FlowVersion  # noqa: E402


def populate(count: int, user) -> None:
    flow = Flow.objects.create(name="web-classification", created_by=user)
    version = FlowVersion.objects.create(
        flow=flow,
        version=1,
        content_hash="0" * 64,
        source="sample",
        inputs={"url": {"type": "string"}, "location": {"type": "string", "default": "LA"}},
        outputs={"category": {"type": "string"}},
    )
    for index in range(count):
        endpoint = Endpoint.objects.create(name=f"ep-bench-{index:03d}", created_by=user, traffic={"blue": 100})
        blue = Deployment.objects.create(
            endpoint=endpoint,
            name="blue",
            flow_version=version,
            state=DeploymentState.SUCCEEDED,
            phase="Succeeded",
            live_generation=1,
            instance_count=2,
            created_by=user,
        )
        Deployment.objects.create(endpoint=endpoint, name="green", flow_version=version, created_by=user)
        Instance.objects.bulk_create(
            Instance(deployment=blue, generation=1, ordinal=n, state=InstanceState.READY) for n in (1, 2)
        )
        DeploymentEvent.objects.bulk_create(
            DeploymentEvent(deployment=blue, phase="Probing", message=f"event {n}") for n in range(12)
        )


def measure(client: Client, url: str, repeat: int, **headers) -> tuple[float, float, int]:
    client.get(url, **headers)  # warm the template cache
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url, **headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        client.get(url, **headers)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], len(queries)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--default-gc", action="store_true", help="keep Python's garbage-collector defaults")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("bench", password="bench-pass-123")
    populate(args.endpoints, user)
    client = Client()
    client.force_login(user)
    client.get("/deployments/")
    if not args.default_gc:
        tune_for_serving()  # as config/asgi.py does once the studio has loaded
    pages = [
        ("Deployments list", "/deployments/", {}),
        ("Deployments list (htmx refresh)", "/deployments/", {"HTTP_HX_REQUEST": "true"}),
        ("Deployments list, search", "/deployments/?q=bench-1", {}),
        ("Details tab", "/deployments/ep-bench-100/blue/", {}),
        ("Consume tab", "/deployments/ep-bench-100/blue/consume/", {}),
        ("Logs tab", "/deployments/ep-bench-100/blue/logs/", {}),
        ("Test tab", "/deployments/ep-bench-100/blue/test/", {}),
    ]
    print(f"{args.endpoints} endpoints, {2 * args.endpoints} deployments; {args.repeat} renders per page")
    print(f"{'page':34} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}")
    for label, url, headers in pages:
        p50, p95, queries = measure(client, url, args.repeat, **headers)
        print(f"{label:34} {p50:8.1f} {p95:8.1f} {queries:8d}")


if __name__ == "__main__":
    main()
