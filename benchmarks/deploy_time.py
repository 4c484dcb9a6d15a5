"""Time from `flowdeploy online-deployment create` to the first successful /score, through the gateway.

Needs a running studio (`make run`) and a signed-in CLI (`flowdeploy login ...`). Run by hand:

    .venv/bin/python benchmarks/deploy_time.py [--flow samples/web-classification-offline] [--repeat 3]

Each round creates an endpoint, deploys the flow with --no-wait, then polls the gateway every 20 ms
until it answers 200; it prints the seconds and deletes the endpoint. Azure takes 15 minutes or more.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLI = [str(Path(sys.executable).parent / "flowdeploy")]
INPUTS = {
    "web-classification-offline": {"url": "https://arxiv.org/abs/2307.04767", "location": "LA"},
    "chat-stream-offline": {"question": "hi", "chat_history": []},
}


def cli(*args: str) -> dict:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"flowdeploy {' '.join(args)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout) if done.stdout.strip() else {}


def one_round(flow: Path, model: str, gateway: str) -> float:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    folder = Path(tempfile.mkdtemp())
    (folder / "endpoint.yml").write_text(f"name: {name}\nauth_mode: key\n")
    (folder / "deployment.yml").write_text(
        f"name: blue\nendpoint_name: {name}\nmodel: {model}@latest\ninstance_type: Standard_DS1_v2\ninstance_count: 1\n"
    )
    cli("online-endpoint", "create", "-f", str(folder / "endpoint.yml"))
    key = cli("online-endpoint", "get-credentials", "-n", name)["primaryKey"]
    body = INPUTS.get(flow.name, {})
    try:
        started = time.perf_counter()
        cli("online-deployment", "create", "-f", str(folder / "deployment.yml"), "--all-traffic", "--no-wait")
        with httpx.Client(timeout=10) as client:
            while True:
                response = client.post(
                    f"{gateway}/endpoints/{name}/score", json=body, headers={"Authorization": f"Bearer {key}"}
                )
                if response.status_code == 200:
                    return time.perf_counter() - started
                if time.perf_counter() - started > 120:
                    raise SystemExit(f"no answer after 120 s: {response.status_code} {response.text}")
                time.sleep(0.02)
    finally:
        cli("online-endpoint", "delete", "-n", name, "--yes")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flow", default=str(ROOT / "samples" / "web-classification-offline"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gateway", default="http://127.0.0.1:8001")
    args = parser.parse_args()
    flow = Path(args.flow)
    model = f"bench-{flow.name}"[:60]
    cli("model", "create", "--name", model, "--path", str(flow))
    times = [one_round(flow, model, args.gateway) for _ in range(args.repeat)]
    print(f"{flow.name}: create -> first 200 from /score, seconds: {', '.join(f'{t:.2f}' for t in times)}")
    print(f"median {statistics.median(times):.2f} s over {len(times)} rounds")


if __name__ == "__main__":
    main()
