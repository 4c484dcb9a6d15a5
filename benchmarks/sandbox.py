"""What the flow sandbox costs: starting a process in the runtime with and without bubblewrap.

Every flow process (validation, test runs, pip, instances) starts through runtime/sandbox.py. This
times the same commands both ways, alternating, so drift hits both alike. Run by hand:

    .venv/bin/python benchmarks/sandbox.py [--repeat 20]

It prints medians in milliseconds: an empty interpreter start, and importing promptflow's serving
app (what an instance and a test run pay before the flow runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.environments import ensure_base  # noqa: E402

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "import promptflow serving": ["-c", "import promptflow.core._serving.app"],
}


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--runtime-dir", default=str(Path.home() / ".cache" / "flowdeploy" / "runtime"))
    args = parser.parse_args()
    runtime = ensure_base(Path(args.runtime_dir))
    home = Path(tempfile.mkdtemp()) / "home"
    print(f"{'command':28} {'direct p50':>11} {'sandboxed p50':>14} {'overhead':>9}")
    for label, arguments in COMMANDS.items():
        direct, sandboxed = [], []
        for _ in range(args.repeat):
            os.environ["FLOWDEPLOY_SANDBOX"] = "off"
            command, env = runtime.flow_process([str(runtime.python), *arguments], home=home)
            direct.append(timed(command, env))
            os.environ["FLOWDEPLOY_SANDBOX"] = "bwrap"
            command, env = runtime.flow_process([str(runtime.python), *arguments], home=home)
            sandboxed.append(timed(command, env))
        d, s = statistics.median(direct), statistics.median(sandboxed)
        print(f"{label:28} {d:10.1f}  {s:13.1f}  {s - d:+8.1f}")


if __name__ == "__main__":
    main()
