"""How long the studio takes to validate a flow and to test-run one line, per sample flow.

Both go through the flow runtime as a subprocess (promptflow never runs in the studio), so most of
the time is Python starting and importing promptflow, not the flow. Run by hand:

    .venv/bin/python benchmarks/flow_runs.py [--repeat 5]

It builds the runtime first if needed (not timed) and prints medians in seconds.
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
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from flows.execution import flow_environment, run_line, scratch_copy, validate_flow  # noqa: E402
from flows.importing import read_requirements  # noqa: E402

SAMPLES = {
    "web-classification-offline": {"url": "https://arxiv.org/abs/2307.04767", "location": "Seattle"},
    "chat-stream-offline": {"question": "hi", "chat_history": []},
    "with-requirements": {"title": "Deploy a Flow for Real-Time Inference"},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    settings.FLOWDEPLOY_RUNS_DIR = Path(tempfile.mkdtemp())
    print(f"{'flow':30} {'validate p50':>13} {'run p50':>9} {'in promptflow':>14}")
    for name, inputs in SAMPLES.items():
        folder = ROOT / "samples" / name
        env = flow_environment(read_requirements(folder))
        validate_times, run_times, engine_times = [], [], []
        for _ in range(args.repeat):
            with scratch_copy(folder) as flow_dir:
                started = time.perf_counter()
                verdict = validate_flow(env, flow_dir, {})
                validate_times.append(time.perf_counter() - started)
                assert verdict["ok"], verdict
                started = time.perf_counter()
                result = run_line(env, flow_dir, {}, inputs, 120)
                run_times.append(time.perf_counter() - started)
                assert result["status"] == "Completed", result
                engine_times.append(result["duration"])
        print(
            f"{name:30} {statistics.median(validate_times):13.2f} {statistics.median(run_times):9.2f}"
            f" {statistics.median(engine_times):14.4f}"
        )


if __name__ == "__main__":
    main()
