"""What inference data collection costs on /score: one real promptflow instance behind the gateway, scored
through an endpoint with collection off and one with collection on (100% sampled).

For the web-classification sample served by one instance (gunicorn gthread, as serving/launcher.py starts
it), through one gateway process (its own `uvicorn serving.gateway:app`, collecting into a temporary folder),
it measures in the same run:

- latency p50, p95 and p99 at concurrency 1 (`--requests` per endpoint, after a warm-up), the two endpoints
  taking turns request by request;
- throughput at concurrency 8 (`--seconds` per endpoint, in alternating rounds);

then waits for the writer to catch up and checks that every request to the collecting endpoint is in the
files and that none was dropped. Run by hand (needs Redis and the flow runtime, which it builds if needed):

    .venv/bin/python benchmarks/data_collection.py [--workers 1] [--requests 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.local_services import start_redis  # noqa: E402
from serving import collector as collection  # noqa: E402
from serving import routing  # noqa: E402
from serving.auth import key_digest, new_key  # noqa: E402

# The gateway benchmark's helpers: the instance, the gateway process, the load generators.
_spec = importlib.util.spec_from_file_location("gateway_benchmark", ROOT / "benchmarks" / "gateway.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

CONCURRENCY = bench.CONCURRENCY


def document(name: str, key: str, instance_url: str, instance_id: str, collect: bool) -> dict:
    return {
        "name": name,
        "version": int(time.time() * 1000),
        "auth_type": "key",
        "key_digests": [key_digest(key)],
        "traffic": {"blue": 100},
        "mirror_traffic": {},
        "deployments": {
            "blue": {
                "instances": [{"id": instance_id, "url": instance_url}],
                "request_timeout_ms": 30000,
                "max_concurrent_requests_per_instance": CONCURRENCY,
                "max_body_bytes": 5 * 1024 * 1024,
                "swagger": None,
                "data_collection": collect,
            }
        },
    }


def collected_lines(folder: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in folder.glob("model_outputs/*/*/*/*/*.jsonl"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers of the instance")
    bench.add_load_arguments(parser, requests=1000, rounds=4, per="endpoint")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="collection-bench-"))
    folder = work / "data-collection"
    os.environ["FLOWDEPLOY_DATA_COLLECTION_DIR"] = str(folder)  # the gateway inherits it
    redis_process = start_redis(args.redis_url, work / "redis")
    client = redis.Redis.from_url(args.redis_url)
    key = new_key()
    gateway, gateway_url = bench.start_gateway(args.redis_url, work / "gateway.log")
    flow_dir = work / "flow"
    shutil.copytree(bench.SAMPLE, flow_dir)
    instance, instance_url = bench.start_instance(args.runtime_dir, flow_dir, args.workers, work / "instance.log")
    names = {False: f"bench-off-{os.getpid()}", True: f"bench-on-{os.getpid()}"}
    try:
        for collect, name in names.items():
            published = document(name, key, instance_url, f"bench-{os.getpid()}", collect)
            routing.publish(client, published)
            bench.wait_until(
                lambda: routing.applied_version(client, name) == published["version"],  # noqa: B023
                10,
                "the gateway applying routes",
            )
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        off = (f"{gateway_url}/endpoints/{names[False]}/score", headers)
        on = (f"{gateway_url}/endpoints/{names[True]}/score", headers)

        off_times, on_times = asyncio.run(bench.latencies([off, on], args.requests))
        totals = {"off": [0, 0.0], "on": [0, 0.0]}
        for _ in range(args.rounds):
            for label, (url, target_headers) in (("off", off), ("on", on)):
                done, elapsed = asyncio.run(bench.throughput(url, target_headers, args.seconds / args.rounds))
                totals[label][0] += done
                totals[label][1] += elapsed
        sent_on = 50 + args.requests + totals["on"][0] + CONCURRENCY * 4 * args.rounds  # warm-ups included
        deadline = time.monotonic() + 60
        while collected_lines(folder / names[True] / "blue") < sent_on and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # the drop counts reach Redis every second
        lines = collected_lines(folder / names[True] / "blue")
        drops = collection.read_drops(client, names[True], "blue")
        size = sum(path.stat().st_size for path in folder.rglob("*.jsonl"))
        for name in names.values():
            routing.withdraw(client, name)
            client.delete(collection.drops_key(name, "blue"))
    finally:
        bench.stop(instance)
        bench.stop(gateway)
        client.close()
        if redis_process is not None:
            redis_process.terminate()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"web-classification-offline, {args.workers} instance worker(s); latency at concurrency 1 "
        f"({args.requests} requests per endpoint, interleaved), throughput at concurrency {CONCURRENCY} "
        f"({args.seconds:g} s per endpoint in {args.rounds} alternating rounds)"
    )
    print(f"{'collection':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    rows = {}
    for label, times in (("off", off_times), ("on", on_times)):
        done, elapsed = totals[label]
        rows[label] = {
            "p50": statistics.median(times) * 1000,
            "p95": bench.percentile(times, 0.95) * 1000,
            "p99": bench.percentile(times, 0.99) * 1000,
            "rps": done / elapsed,
        }
        row = rows[label]
        print(f"{label:>10} {row['p50']:>8.2f} {row['p95']:>8.2f} {row['p99']:>8.2f} {row['rps']:>8.0f}")
    paired = statistics.median(b - a for a, b in zip(off_times, on_times, strict=True)) * 1000
    print(
        f"collection adds {rows['on']['p50'] - rows['off']['p50']:+.2f} ms at p50 (median of paired differences "
        f"{paired:+.2f} ms), {rows['on']['p95'] - rows['off']['p95']:+.2f} ms at p95, and keeps "
        f"{rows['on']['rps'] / rows['off']['rps']:.0%} of the throughput"
    )
    print(
        f"collected {lines} of {sent_on} requests ({size / 1e6:.1f} MB of JSONL); dropped {drops['dropped']}, "
        f"not written {drops['failed']}"
    )


if __name__ == "__main__":
    main()
