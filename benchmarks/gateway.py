"""What the scoring gateway costs: one real promptflow instance, called directly and through the gateway.

For the web-classification sample served by one instance (gunicorn gthread, as serving/launcher.py
starts it) with 1 and then 2 workers, it measures in the same run:

- latency p50 and p99 at concurrency 1 (`--requests`, default 500, after a warm-up);
- throughput at concurrency 8 (`--seconds`, default 10);

once straight to the instance and once through the gateway (its own `uvicorn serving.gateway:app`
process, routing published to Redis, key authentication), and prints the ratios. Targets: the
gateway adds at most 0.5 ms at p50 and keeps >= 90% of direct throughput with a 1-worker instance,
>= 70% with a 2-worker one. Run by hand (needs Redis and the flow runtime, which it builds if needed):

    .venv/bin/python benchmarks/gateway.py [--workers 1 2] [--requests 500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.local_services import free_port, start_redis  # noqa: E402
from runtime.environments import ensure_base  # noqa: E402
from serving import routing  # noqa: E402
from serving.auth import key_digest, new_key  # noqa: E402
from serving.server import gateway_command  # noqa: E402

# The gateway refuses to start without a key and serves only routing signed with it.
os.environ.setdefault("DJANGO_SECRET_KEY", new_key())

SAMPLE = ROOT / "samples" / "web-classification-offline"
INPUTS = {"url": "https://arxiv.org/abs/2307.04767", "location": "Seattle"}
CONCURRENCY = 8


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # not listening yet
            if predicate():
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not happen within {timeout} s")


def answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return response.status == 200


def start_instance(runtime_dir: Path, flow_dir: Path, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    env = ensure_base(runtime_dir)
    port = free_port()
    command = [str(env.python), "-m", "gunicorn", "--workers", str(workers), "--worker-class", "gthread"]
    command += ["--threads", "4", "--bind", f"127.0.0.1:{port}", "--chdir", str(flow_dir), "--keep-alive", "75"]
    command.append("promptflow.core._serving.app:create_app()")
    command, process_env = env.flow_process(
        command,
        home=flow_dir.parent / "home",
        writable=(flow_dir,),
        cwd=flow_dir,
        extra_env={"PROMPTFLOW_PROJECT_PATH": str(flow_dir)},
    )
    process = subprocess.Popen(command, env=process_env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(f"{url}/health"), 60, f"the instance with {workers} worker(s) answering")
    return process, url


def start_gateway(redis_url: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url}
    command = gateway_command(Path(sys.executable).parent, "127.0.0.1", port, env)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(f"{url}/health"), 30, "the gateway answering")
    return process, url


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _call(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict) -> None:
    async with session.post(url, data=body, headers=headers) as response:
        payload = await response.read()
        if response.status != 200:
            raise SystemExit(f"{url} answered {response.status}: {payload[:300]!r}")


async def latencies(targets: list[tuple[str, dict]], count: int) -> list[list[float]]:
    """Concurrency 1, the targets taking turns request by request, so drift in the instance hits both alike."""
    body = json.dumps(INPUTS).encode()
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for _ in targets]
    times: list[list[float]] = [[] for _ in targets]
    try:
        for _ in range(50):
            for session, (url, headers) in zip(sessions, targets, strict=True):
                await _call(session, url, body, headers)
        for _ in range(count):
            for session, (url, headers), kept in zip(sessions, targets, times, strict=True):
                started = time.perf_counter()
                await _call(session, url, body, headers)
                kept.append(time.perf_counter() - started)
    finally:
        for session in sessions:
            await session.close()
    return times


async def throughput(url: str, headers: dict, seconds: float) -> tuple[int, float]:
    """Requests completed and seconds taken by CONCURRENCY clients calling in a loop for `seconds`."""
    body = json.dumps(INPUTS).encode()
    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        await asyncio.gather(*(_call(session, url, body, headers) for _ in range(CONCURRENCY * 4)))
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await _call(session, url, body, headers)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done, time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(direct: tuple[str, dict], gateway: tuple[str, dict], args: argparse.Namespace) -> dict:
    """Latency (interleaved) and throughput (alternating rounds) of both paths."""
    direct_times, gateway_times = asyncio.run(latencies([direct, gateway], args.requests))
    totals = {"direct": [0, 0.0], "gateway": [0, 0.0]}
    for _ in range(args.rounds):
        for name, (url, headers) in (("direct", direct), ("gateway", gateway)):
            done, elapsed = asyncio.run(throughput(url, headers, args.seconds / args.rounds))
            totals[name][0] += done
            totals[name][1] += elapsed
    result = {}
    for name, times in (("direct", direct_times), ("gateway", gateway_times)):
        done, elapsed = totals[name]
        result[name] = {
            "p50": statistics.median(times) * 1000,
            "p99": percentile(times, 0.99) * 1000,
            "rps": done / elapsed,
        }
    result["paired"] = statistics.median(g - d for g, d in zip(gateway_times, direct_times, strict=True)) * 1000
    return result


def add_load_arguments(parser: argparse.ArgumentParser, requests: int, rounds: int, per: str) -> None:
    """What every gateway benchmark takes (this one, data_collection.py, tracing.py): how much load, how many
    alternating rounds, its own Redis and the flow runtime."""
    parser.add_argument("--requests", type=int, default=requests, help=f"requests at concurrency 1, per {per}")
    parser.add_argument("--seconds", type=float, default=10.0, help=f"duration at concurrency 8, per {per}")
    parser.add_argument("--rounds", type=int, default=rounds, help="alternate the two setups this many times")
    parser.add_argument("--redis-url", default=os.environ.get("GATEWAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10"))
    parser.add_argument("--runtime-dir", type=Path, default=Path.home() / ".cache" / "flowdeploy" / "runtime")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    add_load_arguments(parser, requests=500, rounds=2, per="path")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    redis_process = start_redis(args.redis_url, work / "redis")
    client = redis.Redis.from_url(args.redis_url)
    key = new_key()
    gateway, gateway_url = start_gateway(args.redis_url, work / "gateway.log")
    results = []
    try:
        for workers in args.workers:
            flow_dir = work / f"flow-{workers}"
            shutil.copytree(SAMPLE, flow_dir)
            instance, instance_url = start_instance(
                args.runtime_dir, flow_dir, workers, work / f"instance-{workers}.log"
            )
            try:
                name = f"bench-{workers}w"
                version = int(time.time() * 1000)
                document = {
                    "name": name,
                    "version": version,
                    "auth_type": "key",
                    "key_digests": [key_digest(key)],
                    "traffic": {"blue": 100},
                    "mirror_traffic": {},
                    "deployments": {
                        "blue": {
                            "instances": [{"id": f"bench-{workers}", "url": instance_url}],
                            "request_timeout_ms": 30000,
                            "max_concurrent_requests_per_instance": CONCURRENCY,
                            "max_body_bytes": 5 * 1024 * 1024,
                            "swagger": None,
                            "data_collection": False,
                        }
                    },
                }
                routing.publish(client, document)
                wait_until(lambda: routing.applied_version(client, name) == version, 10, "the gateway applying routes")  # noqa: B023
                json_headers = {"Content-Type": "application/json"}
                direct = (f"{instance_url}/score", json_headers)
                through = (f"{gateway_url}/endpoints/{name}/score", {**json_headers, "Authorization": f"Bearer {key}"})
                results.append((workers, measure(direct, through, args)))
                routing.withdraw(client, name)
            finally:
                stop(instance)
    finally:
        stop(gateway)
        client.close()
        if redis_process is not None:
            redis_process.terminate()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"web-classification-offline; latency at concurrency 1 ({args.requests} requests per path, interleaved), "
        f"throughput at concurrency {CONCURRENCY} ({args.seconds:g} s per path)"
    )
    print(f"{'workers':>7} {'path':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for workers, result in results:
        direct, through = result["direct"], result["gateway"]
        for name, row in (("direct", direct), ("gateway", through)):
            print(f"{workers:>7} {name:>8} {row['p50']:>8.2f} {row['p99']:>8.2f} {row['rps']:>8.0f}")
        added = through["p50"] - direct["p50"]
        kept = through["rps"] / direct["rps"]
        target = 0.9 if workers == 1 else 0.7
        print(
            f"{workers:>7} {'gateway':>8} adds {added:+.2f} ms at p50 (median of paired differences "
            f"{result['paired']:+.2f} ms; target <= 0.5: {'ok' if added <= 0.5 else 'MISSED'}), "
            f"keeps {kept:.0%} of the throughput (target >= {target:.0%}: {'ok' if kept >= target else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
