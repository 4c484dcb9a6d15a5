"""What tracing ("Application Insights diagnostics") costs on /score: three real promptflow instances of the same
flow behind one gateway: one as Flowdeploy starts an instance without tracing (PF_DISABLE_TRACING=true), one as
it starts a traced one (monitoring/otlp.py `exporter_env`: promptflow's spans exported over OTLP/HTTP by a
BatchSpanProcessor), and one with promptflow's tracing on but no tracer provider (what its instrumentation
costs by itself). The traced one exports to an OTLP sink in this process that decodes every export with the
studio's reader (monitoring/otlp.py) and counts the spans.

For the web-classification-offline sample, one gunicorn gthread worker per instance, it measures in the same run:

- latency p50, p95 and p99 at concurrency 1 (`--requests` per endpoint, after a warm-up), the endpoints
  taking turns request by request;
- throughput at concurrency 8 (`--seconds` per endpoint, in alternating rounds);

then waits for the exports and checks that every traced request's flow span arrived. The sink answers at once;
what the studio does with a batch (storing it) happens off the instance's request path too. Run by hand (needs
Redis and the flow runtime, which it builds if needed):

    .venv/bin/python benchmarks/tracing.py [--requests 500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.local_services import free_port, start_redis  # noqa: E402
from monitoring import otlp  # noqa: E402
from runtime.environments import ensure_base  # noqa: E402
from serving import routing  # noqa: E402
from serving.auth import new_key  # noqa: E402

_spec = importlib.util.spec_from_file_location("gateway_benchmark", ROOT / "benchmarks" / "gateway.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
_spec = importlib.util.spec_from_file_location("collection_benchmark", ROOT / "benchmarks" / "data_collection.py")
collection_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(collection_bench)

CONCURRENCY = bench.CONCURRENCY
SINK_TOKEN = "benchmark-token"
# off: as Flowdeploy starts an untraced instance; spans: promptflow's tracing on without a tracer provider (its
# instrumentation alone); on: as Flowdeploy starts a traced instance, exporting to the sink.
LABELS = ("off", "spans", "on")


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: decodes each export as the studio does and counts spans and flow spans."""

    spans = 0
    flow_spans = 0
    exports = 0
    refused = 0
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Authorization") != f"Bearer {SINK_TOKEN}":
            Sink.refused += 1
            self.send_response(401)
            self.end_headers()
            return
        spans = otlp.spans(body)
        with Sink.lock:
            Sink.exports += 1
            Sink.spans += len(spans)
            Sink.flow_spans += sum(1 for span in spans if not span["parent_span_id"])
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


def start_instance(runtime_dir: Path, flow_dir: Path, log: Path, extra: dict[str, str]) -> tuple:
    """benchmarks/gateway.py's instance (one gthread worker, sandboxed), with extra variables."""
    env = ensure_base(runtime_dir)
    port = free_port()
    command = [str(env.python), "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread"]
    command += ["--threads", "4", "--bind", f"127.0.0.1:{port}", "--chdir", str(flow_dir), "--keep-alive", "75"]
    command.append("promptflow.core._serving.app:create_app()")
    command, process_env = env.flow_process(
        command,
        home=flow_dir.parent / "home",
        writable=(flow_dir,),
        cwd=flow_dir,
        extra_env={"PROMPTFLOW_PROJECT_PATH": str(flow_dir), **extra},
    )
    process = subprocess.Popen(command, env=process_env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    bench.wait_until(lambda: bench.answers(f"{url}/health"), 60, "the instance answering")
    return process, url


def main() -> None:
    parser = argparse.ArgumentParser()
    bench.add_load_arguments(parser, requests=500, rounds=4, per="endpoint")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tracing-bench-"))
    redis_process = start_redis(args.redis_url, work / "redis")
    client = redis.Redis.from_url(args.redis_url)
    key = new_key()
    sink_port = free_port()
    sink = ThreadingHTTPServer(("127.0.0.1", sink_port), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    gateway, gateway_url = bench.start_gateway(args.redis_url, work / "gateway.log")
    processes = []
    names = {label: f"trace-{label}-{os.getpid()}" for label in LABELS}
    try:
        for label, name in names.items():
            flow_dir = work / name / "flow"
            shutil.copytree(bench.SAMPLE, flow_dir)
            extra = {}
            if label == "on":
                bootstrap = flow_dir.parent / "home" / "flowdeploy-tracing"
                extra = otlp.exporter_env(f"http://127.0.0.1:{sink_port}/v1/traces", SINK_TOKEN, bootstrap)
            elif label == "spans":  # promptflow traces, but no tracer provider is set: nothing is recorded or sent
                extra = {"PF_DISABLE_TRACING": "false"}
            process, url = start_instance(args.runtime_dir, flow_dir, work / f"{name}.log", extra)
            processes.append(process)
            published = collection_bench.document(name, key, url, f"bench-{name}", False)
            routing.publish(client, published)
            bench.wait_until(
                lambda: routing.applied_version(client, name) == published["version"],  # noqa: B023
                10,
                "the gateway applying routes",
            )
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        targets = {label: (f"{gateway_url}/endpoints/{name}/score", headers) for label, name in names.items()}
        times = dict(zip(LABELS, asyncio.run(bench.latencies(list(targets.values()), args.requests)), strict=True))
        totals = {label: [0, 0.0] for label in LABELS}
        for _ in range(args.rounds):
            for label, (url, target_headers) in targets.items():
                done, elapsed = asyncio.run(bench.throughput(url, target_headers, args.seconds / args.rounds))
                totals[label][0] += done
                totals[label][1] += elapsed
        sent_on = 50 + args.requests + totals["on"][0] + CONCURRENCY * 4 * args.rounds  # warm-ups included
        deadline = time.monotonic() + 60
        while Sink.flow_spans < sent_on and time.monotonic() < deadline:
            time.sleep(0.2)
        for name in names.values():
            routing.withdraw(client, name)
    finally:
        for process in processes:
            bench.stop(process)
        bench.stop(gateway)
        sink.shutdown()
        client.close()
        if redis_process is not None:
            redis_process.terminate()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"web-classification-offline, 1 instance worker each; latency at concurrency 1 ({args.requests} requests "
        f"per endpoint, interleaved), throughput at concurrency {CONCURRENCY} ({args.seconds:g} s per endpoint in "
        f"{args.rounds} alternating rounds)"
    )
    print(f"{'tracing':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    rows = {}
    for label in LABELS:
        done, elapsed = totals[label]
        rows[label] = {
            "p50": statistics.median(times[label]) * 1000,
            "p95": bench.percentile(times[label], 0.95) * 1000,
            "p99": bench.percentile(times[label], 0.99) * 1000,
            "rps": done / elapsed,
        }
        row = rows[label]
        print(f"{label:>8} {row['p50']:>8.2f} {row['p95']:>8.2f} {row['p99']:>8.2f} {row['rps']:>8.0f}")
    for label in LABELS[1:]:
        paired = statistics.median(b - a for a, b in zip(times["off"], times[label], strict=True)) * 1000
        print(
            f"{label}: {rows[label]['p50'] - rows['off']['p50']:+.2f} ms at p50 (median of paired differences "
            f"{paired:+.2f} ms), {rows[label]['p95'] - rows['off']['p95']:+.2f} ms at p95, "
            f"{rows[label]['rps'] / rows['off']['rps']:.0%} of the throughput"
        )
    print(
        f"exported {Sink.flow_spans} flow spans for {sent_on} traced requests ({Sink.spans} spans in "
        f"{Sink.exports} exports, {Sink.spans / max(Sink.flow_spans, 1):.1f} per request); refused {Sink.refused}"
    )


if __name__ == "__main__":
    main()
