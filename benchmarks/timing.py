"""Timing that every benchmark shares: medians over interleaved rounds, so ratios hold under load."""

import statistics
import time
from collections.abc import Callable


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function over `repeats` rounds, after one warm-up call each. Every round calls every
    function once, so load from other processes falls on all of them alike and their ratios stay meaningful; each
    round starts one function later than the last, so no function always runs first (or right after another)."""
    for fn in fns.values():
        fn()
    names = list(fns)
    times = {name: [] for name in names}
    for round_ in range(repeats):
        for i in range(len(names)):
            name = names[(round_ + i) % len(names)]
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}
