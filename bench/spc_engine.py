"""Cost per measurement of the SPC engine, in process (no OPC UA, no store): what the SPC monitor adds to the
report path for each accepted value before any alarm is stored or any node written.

For each chart kind, a stream of normal values (seeded) goes through `SpcChart.add` (the eight Nelson rules
judged) and, as the monitor does after every value, `SpcChart.status()` (limits and the capability over the
rolling window). Prints µs per value for both, medians of --repeats runs.

    .venv/bin/python bench/spc_engine.py --values 20000 --repeats 5

Shared machines are noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from qualitybridge.domain.spc import ALL_RULES, ControlLimits, SpcChart, SpcSettings


def measure(sample_size: int, values: list[float], *, with_status: bool, capability_window: int) -> float:
    chart = SpcChart(
        sample_size,
        4.0,
        16.0,
        ControlLimits(10.0, 13.0, 7.0),
        SpcSettings(rules=ALL_RULES, capability_window=capability_window),
    )
    started = time.perf_counter()
    if with_status:
        for value in values:
            chart.add(value, "r")
            chart.status()
    else:
        for value in values:
            chart.add(value, "r")
    return (time.perf_counter() - started) / len(values) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--capability-window", type=int, default=125)
    args = parser.parse_args()
    rng = random.Random(14)  # noqa: S311 - a reproducible stream, not a secret
    values = [rng.gauss(10.0, 1.0) for _ in range(args.values)]
    print(f"{args.values} values, capability window {args.capability_window}, all eight rules; µs per value")
    print(f"{'chart':<12}{'add':>10}{'add+status':>14}")
    for label, sample_size in (("I-MR", 1), ("Xbar-R n=5", 5), ("Xbar-S n=12", 12)):
        add = statistics.median(
            measure(sample_size, values, with_status=False, capability_window=args.capability_window)
            for _ in range(args.repeats)
        )
        both = statistics.median(
            measure(sample_size, values, with_status=True, capability_window=args.capability_window)
            for _ in range(args.repeats)
        )
        print(f"{label:<12}{add:>10.1f}{both:>14.1f}")


if __name__ == "__main__":
    main()
