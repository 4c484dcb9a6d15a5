"""The studio's garbage-collector settings, applied once it has loaded (config/asgi.py).

A big page (the Deployments list with 200 endpoints) allocates many short-lived objects; with
Python's defaults the collector's older-generation passes rescan everything the process loaded and
add 70-100 ms to the slowest renders. Freezing what is loaded at start and collecting the young
generation less often keeps p95 near p50 (benchmarks/pages.py, docs/performance.md).
"""

import gc

YOUNG_THRESHOLD = 50_000  # Python's default is 700 allocations


def tune_for_serving() -> None:
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle * 2, old * 10)
