"""Soak: steady load on one deployment for ten minutes, watching every process for growth.

    make soak                                    # or: .venv/bin/python benchmarks/soak.py
    SOAK_SECONDS=1800 SOAK_CLIENTS=8 make soak   # longer, more clients

It starts on loopback, in a throwaway data folder, what a deployment needs, as `make run` does: Redis
(only when none answers on SOAK_REDIS_URL; by default the first empty database, from 15 down, of the Redis
on 127.0.0.1:6379, which must stay the soak's alone while it runs), migrations, a Celery
worker and beat (the reconciler every 5 s, retention every FLOWDEPLOY_RETENTION_INTERVAL s), the scoring
gateway (serving.server.gateway_command) and the studio (uvicorn). It imports
samples/web-classification-offline and deploys it through endpoints.services: the worker provisions a
real, sandboxed promptflow instance. Then, for SOAK_SECONDS (default 600):

- SOAK_CLIENTS (default 4) request loops score through the gateway with the endpoint's key, one request at
  a time each, every request bounded by a 30 s timeout, every loop ending at the deadline;
- one loop signed in to the studio fetches the Deployments list and the deployment's page every second;
- every SOAK_SAMPLE_SECONDS (default 5) the RSS and open file descriptors of every process are sampled: the
  worker and its pool children, beat, the gateway, the studio, the instance (sandbox, gunicorn master and
  worker), Redis when started here; with Redis's memory, the gateway's in-flight hash and the event rows.

The verdict (what "grows without bound" means here). Samples of the first SOAK_WARMUP_SECONDS (default
60) are left out; of the rest, the first fifth is the baseline and the last fifth the end. A process fails
when the median RSS of the end exceeds the baseline's by more than max(10 MiB, 10%), or its most open
file descriptors at the end exceed the baseline's most by more than 5, or the number of processes of a
role grows. Redis fails when the soak's database (the sum of MEMORY USAGE of its keys) grows by more than
max(1 MiB, 20%); the in-flight hash when it names more instances than ever ran; the events when they pass
FLOWDEPLOY_EVENTS_PER_DEPLOYMENT; the load when more than 0.1% of requests fail. At the end the endpoint is
deleted and no instance process may remain. Exit status 1 on any failure. SOAK_REPORT=<file> also writes
every sample as JSON.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.local_services import free_port, redis_answers, start_redis  # noqa: E402
from serving.server import gateway_command  # noqa: E402

SAMPLE = ROOT / "samples" / "web-classification-offline"
INPUTS = {"url": "https://arxiv.org/abs/2307.04767", "location": "Seattle"}
BIN = Path(sys.executable).parent
MIB = 1024 * 1024


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, not {raw!r}") from None


SECONDS = env_number("SOAK_SECONDS", 600)
CLIENTS = int(env_number("SOAK_CLIENTS", 4))
SAMPLE_SECONDS = env_number("SOAK_SAMPLE_SECONDS", 5)
WARMUP_SECONDS = env_number("SOAK_WARMUP_SECONDS", min(60, SECONDS / 5))
LOCAL_REDIS = "redis://127.0.0.1:6379"


def soak_redis_url() -> str:
    """SOAK_REDIS_URL, else an empty database of the local Redis (tests and `make run` use others)."""
    if os.environ.get("SOAK_REDIS_URL"):
        return os.environ["SOAK_REDIS_URL"]
    if not redis_answers(f"{LOCAL_REDIS}/0"):
        return f"{LOCAL_REDIS}/12"  # started here, empty
    for db in range(15, 0, -1):
        if redis.Redis.from_url(f"{LOCAL_REDIS}/{db}").dbsize() == 0:
            return f"{LOCAL_REDIS}/{db}"
    raise SystemExit(f"No empty database in the Redis at {LOCAL_REDIS}: set SOAK_REDIS_URL.")


REDIS_URL = soak_redis_url()
RETENTION_INTERVAL = os.environ.get("FLOWDEPLOY_RETENTION_INTERVAL", "60")


# --- processes ------------------------------------------------------------------------------------------------


def children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    return children


def tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def measure(pid: int) -> tuple[float, int] | None:
    """RSS in MiB and open file descriptors of a process, or None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024, fds
    return 0.0, fds  # a zombie has no VmRSS


def command_of(pid: int) -> str:
    try:
        words = [w.decode(errors="replace") for w in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if w]
    except OSError:
        return "?"
    if not words:
        return "?"
    return " ".join([Path(words[0]).name, *words[1:4]])[:60]


@dataclass
class Series:
    role: str
    pid: int
    command: str
    times: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)


# --- the run --------------------------------------------------------------------------------------------------


class Soak:
    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="flowdeploy-soak-"))
        self.children: dict[str, subprocess.Popen] = {}
        self.logs: list = []
        self.series: dict[int, Series] = {}
        self.counts: dict[str, list[int]] = {}
        self.redis_memory: list[float] = []
        self.inflight_sizes: list[int] = []
        self.event_counts: list[int] = []
        self.sample_times: list[float] = []
        self.instance_ids: set[str] = set()
        self.requests = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.studio_pages = 0
        self.studio_errors: list[str] = []
        self.lock = threading.Lock()
        self.redis_process = None
        self.redis_was_empty = False
        self.studio_port = free_port()
        self.gateway_port = free_port()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "FLOWDEPLOY_DATA_DIR": str(self.work / "data"),
            "REDIS_URL": REDIS_URL,
            "FLOWDEPLOY_QUEUE": f"soak-{os.getpid()}",
            "FLOWDEPLOY_STUDIO_URL": f"http://127.0.0.1:{self.studio_port}",
            "FLOWDEPLOY_GATEWAY_URL": f"http://127.0.0.1:{self.gateway_port}",
            "FLOWDEPLOY_RETENTION_INTERVAL": RETENTION_INTERVAL,
            "FLOWDEPLOY_LOG_LEVEL": "WARNING",
        }
        self.env.pop("DATABASE_URL", None)

    # setup

    def start(self) -> None:
        os.environ.update(self.env)
        os.environ.pop("DATABASE_URL", None)
        Path(self.env["FLOWDEPLOY_DATA_DIR"]).mkdir(parents=True)
        self.redis_process = start_redis(REDIS_URL, self.work / "redis")
        if not redis_answers(REDIS_URL):
            raise SystemExit(f"No Redis answers at {REDIS_URL}")
        self.redis_was_empty = redis.Redis.from_url(REDIS_URL).dbsize() == 0
        if not self.redis_was_empty:
            print(f"WARNING: {REDIS_URL} holds other keys: its size is not the soak's alone.", file=sys.stderr)
        print(f"Redis: {REDIS_URL.rsplit('@', 1)[-1]}", flush=True)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", "--noinput", verbosity=0)
        logs = self.work / "logs"
        logs.mkdir()
        celery = [str(BIN / "celery"), "-A", "config"]
        commands = {
            "worker": [*celery, "worker", "-Q", self.env["FLOWDEPLOY_QUEUE"], "--concurrency", "2", "-l", "WARNING"],
            "beat": [*celery, "beat", "-l", "WARNING", "--schedule", str(self.work / "celerybeat-schedule")],
            "gateway": [*gateway_command(BIN, "127.0.0.1", self.gateway_port, self.env), "--log-level", "warning"],
            "studio": [
                str(BIN / "uvicorn"),
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.studio_port),
                "--log-level",
                "warning",
            ],
        }
        for name, command in commands.items():
            log = (logs / f"{name}.log").open("a")
            self.logs.append(log)
            self.children[name] = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_for(lambda: self.answers(f"http://127.0.0.1:{self.gateway_port}/health"), 30, "the gateway")
        self.wait_for(lambda: self.answers(f"http://127.0.0.1:{self.studio_port}/accounts/login/"), 30, "the studio")

    def answers(self, url: str) -> bool:
        for name, process in self.children.items():
            if process.poll() is not None:
                raise SystemExit(f"{name} exited; see {self.work / 'logs' / name}.log")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def wait_for(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise SystemExit(f"{what} did not answer within {timeout} s")

    def deploy(self) -> None:
        from django.contrib.auth import get_user_model

        from endpoints import services
        from endpoints.models import DeploymentState
        from flows.importing import import_folder

        self.password = secrets.token_urlsafe(16)
        self.user = get_user_model().objects.create_superuser("soak", "soak@example.com", self.password)
        print("Importing and deploying web-classification-offline...", flush=True)
        version = import_folder(SAMPLE, "soak-web-classification", self.user)
        self.endpoint = services.create_endpoint("soak", user=self.user)
        started = time.monotonic()
        self.deployment = services.create_or_update_deployment(
            self.endpoint, "blue", version, user=self.user, vm_size="Standard_DS1_v2"
        )

        def settled() -> bool:
            self.deployment.refresh_from_db()
            return self.deployment.state in (DeploymentState.SUCCEEDED, DeploymentState.FAILED)

        self.wait_for(settled, 300, "the deployment")
        if self.deployment.state != DeploymentState.SUCCEEDED:
            raise SystemExit(f"The deployment failed: {self.deployment.failure_reason}")
        self.key = services.credentials(self.endpoint)["primaryKey"]
        self.score_url = f"http://127.0.0.1:{self.gateway_port}/endpoints/soak/score"
        headers = {"Authorization": f"Bearer {self.key}"}
        self.wait_for(
            lambda: httpx.post(self.score_url, json=INPUTS, headers=headers, timeout=30).status_code == 200,
            60,
            "the gateway for the deployment",
        )
        print(f"Deployed and answering through the gateway in {time.monotonic() - started:.1f} s.", flush=True)

    # load

    def score_loop(self, deadline: float) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = client.post(self.score_url, json=INPUTS, headers=headers)
                    failure = None if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    self.requests += 1
                    if failure:
                        self.errors.append(failure)
                    else:
                        self.latencies.append(time.perf_counter() - started)

    def studio_loop(self, deadline: float) -> None:
        base = f"http://127.0.0.1:{self.studio_port}"
        pages = ["/deployments/", self.deployment.get_absolute_url()]
        with httpx.Client(base_url=base, timeout=30, follow_redirects=True) as client:
            client.get("/accounts/login/")
            login = {
                "username": "soak",
                "password": self.password,
                "csrfmiddlewaretoken": client.cookies.get("csrftoken", ""),
            }
            client.post("/accounts/login/", data=login, headers={"Referer": f"{base}/accounts/login/"})
            while time.monotonic() < deadline:
                for page in pages:
                    try:
                        response = client.get(page)
                        ok = response.status_code == 200 and "/accounts/login/" not in str(response.url)
                        failure = None if ok else f"{page}: {response.status_code} {response.url}"
                    except httpx.HTTPError as exc:
                        failure = f"{page}: {type(exc).__name__}: {exc}"
                    with self.lock:
                        self.studio_pages += 1
                        if failure:
                            self.studio_errors.append(failure)
                time.sleep(1)

    # sampling

    def roots(self) -> dict[str, list[int]]:
        """The processes to watch, by role; an instance counts its sandbox, gunicorn and gunicorn's workers."""
        from endpoints.models import Instance, InstanceState

        roles = {name: [process.pid] for name, process in self.children.items()}
        if self.redis_process is not None:
            roles["redis"] = [self.redis_process.pid]
        instances = []
        for instance in Instance.objects.exclude(state=InstanceState.STOPPED):
            self.instance_ids.add(str(instance.id))
            if instance.pid:
                sandbox = parent_of(instance.pid)
                instances.append(sandbox if sandbox and sandbox != 1 else instance.pid)
        roles["instance"] = instances
        return roles

    def sample(self, now: float) -> None:
        from endpoints import publishing
        from endpoints.models import DeploymentEvent
        from serving import routing

        children = children_map()
        for role, pids in self.roots().items():
            members = [member for pid in pids for member in tree(pid, children)]
            self.counts.setdefault(role, []).append(len(members))
            for rank, pid in enumerate(members):
                values = measure(pid)
                if values is None:
                    continue
                label = f"{role}" if rank == 0 else f"{role} child"
                series = self.series.setdefault(pid, Series(label, pid, command_of(pid)))
                series.times.append(now)
                series.rss.append(values[0])
                series.fds.append(values[1])
        client = publishing.client()
        # What this soak keeps in its Redis database (routing, in-flight and applied hashes, Celery's queue);
        # the server's own used_memory counts every database, and other users of a shared Redis.
        used = sum(client.memory_usage(key) or 0 for key in client.scan_iter(count=1000))
        self.redis_memory.append(used / MIB)
        self.inflight_sizes.append(client.hlen(routing.INFLIGHT_KEY))
        self.event_counts.append(DeploymentEvent.objects.count())
        self.sample_times.append(now)

    def run(self) -> None:
        started = time.monotonic()
        deadline = started + SECONDS
        loops = [threading.Thread(target=self.score_loop, args=(deadline,), daemon=True) for _ in range(CLIENTS)]
        loops.append(threading.Thread(target=self.studio_loop, args=(deadline,), daemon=True))
        for loop in loops:
            loop.start()
        print(f"Soaking for {SECONDS:g} s with {CLIENTS} client(s); a sample every {SAMPLE_SECONDS:g} s.", flush=True)
        next_report = started + 60
        while time.monotonic() < deadline:
            self.sample(time.monotonic() - started)
            for name, process in self.children.items():
                if process.poll() is not None:
                    raise SystemExit(f"{name} exited during the soak; see {self.work / 'logs' / name}.log")
            if time.monotonic() >= next_report:
                next_report += 60
                print(
                    f"  {time.monotonic() - started:5.0f} s: {self.requests} requests, {len(self.errors)} failed",
                    flush=True,
                )
            time.sleep(max(0.0, min(SAMPLE_SECONDS, deadline - time.monotonic())))
        for loop in loops:
            loop.join(timeout=60)
        self.sample(time.monotonic() - started)
        self.seconds = time.monotonic() - started

    # teardown

    def delete_and_check(self) -> list[str]:
        """Delete the endpoint through the services; every instance process must be gone."""
        from endpoints import services
        from endpoints.models import Endpoint

        services.delete_endpoint(self.endpoint, user=self.user)
        self.wait_for(lambda: not Endpoint.objects.filter(pk=self.endpoint.pk).exists(), 120, "the deletion")
        time.sleep(1)
        left = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes()
            except OSError:
                continue
            if any(instance_id.encode() in text for instance_id in self.instance_ids):
                left.append(cmdline.parent.name)
        return [f"instance processes left after the deletion: {', '.join(left)}"] if left else []

    def stop(self) -> None:
        for process in self.children.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.children.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for log in self.logs:
            log.close()
        try:
            from endpoints import publishing

            client = publishing.client()
            if self.redis_was_empty:  # the database was the soak's alone
                client.flushdb()
            else:  # the in-flight and applied hashes are shared with whoever else uses it
                for key in client.scan_iter(f"*{self.env['FLOWDEPLOY_QUEUE']}*"):
                    client.delete(key)
        except Exception as exc:  # the report matters more than this cleanup
            print(f"Could not clean Redis up: {exc}", file=sys.stderr)
        if self.redis_process is not None:
            self.redis_process.terminate()
            self.redis_process.wait(timeout=10)
        shutil.rmtree(self.work, ignore_errors=True)


# --- the verdict ----------------------------------------------------------------------------------------------


def windows(times: list[float], values: list) -> tuple[list, list]:
    """The baseline (first fifth after the warm-up) and the end (last fifth) of a series."""
    kept = [value for at, value in zip(times, values, strict=True) if at >= WARMUP_SECONDS]
    if len(kept) < 5:
        return [], []
    fifth = max(1, len(kept) // 5)
    return kept[:fifth], kept[-fifth:]


def verdict(soak: Soak) -> tuple[list[str], list[str]]:
    """The report's lines and the failures."""
    from django.conf import settings

    lines, failures = [], []
    header = (
        f"{'process':<16} {'pid':>7} {'RSS MiB start':>13} {'end':>7} {'max':>7} {'FDs start':>9} {'end':>5} {'max':>5}"
    )
    lines += [header, "-" * len(header)]
    for series in sorted(soak.series.values(), key=lambda s: (s.role, s.pid)):
        if not series.rss:
            continue
        lines.append(
            f"{series.role:<16} {series.pid:>7} {series.rss[0]:>13.1f} {series.rss[-1]:>7.1f} {max(series.rss):>7.1f}"
            f" {series.fds[0]:>9} {series.fds[-1]:>5} {max(series.fds):>5}   {series.command}"
        )
        base, end = windows(series.times, series.rss)
        if base and end:
            growth = statistics.median(end) - statistics.median(base)
            limit = max(10.0, 0.10 * statistics.median(base))
            if growth > limit:
                failures.append(f"{series.role} {series.pid}: RSS grew {growth:.1f} MiB (limit {limit:.1f})")
        base, end = windows(series.times, series.fds)
        if base and end and max(end) > max(base) + 5:
            failures.append(f"{series.role} {series.pid}: open files grew from {max(base)} to {max(end)}")
    for role, counts in soak.counts.items():
        base, end = windows(soak.sample_times, counts)
        if base and end and max(end) > max(base):
            failures.append(f"{role}: {max(base)} process(es) became {max(end)}")
    base, end = windows(soak.sample_times, soak.redis_memory)
    lines.append("")
    lines.append(
        f"Redis (the soak's database) MiB: start {soak.redis_memory[0]:.3f}, end {soak.redis_memory[-1]:.3f}, "
        f"max {max(soak.redis_memory):.3f}"
    )
    if base and end:
        growth = statistics.median(end) - statistics.median(base)
        if growth > max(1.0, 0.2 * statistics.median(base)):
            failures.append(f"the soak's Redis database grew {growth:.3f} MiB")
    lines.append(f"Gateway in-flight hash entries: max {max(soak.inflight_sizes)}, end {soak.inflight_sizes[-1]}")
    if max(soak.inflight_sizes) > len(soak.instance_ids):
        failures.append(f"the in-flight hash named {max(soak.inflight_sizes)} instances; {len(soak.instance_ids)} ran")
    lines.append(f"Deployment events: start {soak.event_counts[0]}, end {soak.event_counts[-1]}")
    if soak.event_counts[-1] > settings.FLOWDEPLOY_EVENTS_PER_DEPLOYMENT:
        failures.append(f"{soak.event_counts[-1]} events")
    ok = len(soak.latencies)
    lines.append("")
    lines.append(
        f"Scoring: {soak.requests} requests in {soak.seconds:.0f} s ({soak.requests / soak.seconds:.1f}/s) "
        f"with {CLIENTS} client(s), {len(soak.errors)} failed"
        + (
            f"; latency p50 {statistics.median(soak.latencies) * 1000:.1f} ms, "
            f"p99 {sorted(soak.latencies)[int(0.99 * (ok - 1))] * 1000:.1f} ms, max {max(soak.latencies) * 1000:.1f} ms"
            if ok
            else ""
        )
    )
    lines.append(f"Studio: {soak.studio_pages} pages, {len(soak.studio_errors)} failed")
    if soak.requests == 0 or len(soak.errors) > 0.001 * soak.requests:
        failures.append(f"{len(soak.errors)} of {soak.requests} requests failed: {soak.errors[:3]}")
    if soak.studio_errors:
        failures.append(f"{len(soak.studio_errors)} studio pages failed: {soak.studio_errors[:3]}")
    return lines, failures


def main() -> int:
    soak = Soak()
    failures = []
    try:
        soak.start()
        soak.deploy()
        soak.run()
        lines, failures = verdict(soak)
        failures += soak.delete_and_check()
    finally:
        soak.stop()
    print()
    print(f"Soak of {soak.seconds:.0f} s (warm-up {WARMUP_SECONDS:g} s left out of the verdict)")
    print("\n".join(lines))
    if os.environ.get("SOAK_REPORT"):
        report = {
            "seconds": soak.seconds,
            "series": [vars(series) for series in soak.series.values()],
            "redis_memory_mib": soak.redis_memory,
            "inflight_sizes": soak.inflight_sizes,
            "event_counts": soak.event_counts,
            "sample_times": soak.sample_times,
            "requests": soak.requests,
            "errors": soak.errors[:100],
            "failures": failures,
        }
        Path(os.environ["SOAK_REPORT"]).write_text(json.dumps(report, indent=1))
    print()
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("OK: nothing grew without bound.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
