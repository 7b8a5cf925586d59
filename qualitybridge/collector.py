"""The garbage collector's thresholds for QualityBridge's long-running processes (the server, the relay's process,
the ERP simulator).

The youngest generation is scanned after 50,000 more objects were made than freed instead of 700: a report batch's
objects (thousands, alive until its answer), a relay page's and a posting batch's were scanned and promoted again
and again, though nearly all of them die by their reference counts. The simulator keeps every booking it made, so
its collections walked a heap that grows for as long as it runs. Cyclic garbage is still collected, at most that
many objects later. Measured (docs/performance.md): the collector's own time per batched measurement in
bench/batch_report_path.py 3.5-5.8 -> 0.0 µs; the simulator's CPU per booked posting in bench/relay_cost.py 22.5-24.2
-> 15.3-15.5 µs.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune_collector"]

THRESHOLDS = (50_000, 20, 10)


def tune_collector() -> None:
    """Set THRESHOLDS for this process (and the processes it forks from now on)."""
    gc.set_threshold(*THRESHOLDS)
