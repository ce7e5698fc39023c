"""Memory of this process and every process under it, sampled while a benchmark runs.

Proportional set size (PSS): a page shared by several processes (the Deno binary, a snapshot
mapped by each runner) counts once in total, so the sum is what the tree really holds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rlm_conformance.processes import descendants


def tree_pss_mb(root: int) -> float:
    """PSS of ``root`` and its descendants, in MB (Linux /proc)."""
    total_kb = 0
    for pid in [root, *descendants(root)]:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    break
        except (OSError, ValueError):
            continue
    return total_kb / 1024


@contextmanager
def sampled_peak(interval_s: float = 0.5) -> Iterator[list[float]]:
    """Sample this process tree's PSS while the block runs; yields [peak MB]."""
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_pss_mb(os.getpid()))
            done.wait(interval_s)

    thread = threading.Thread(target=sample, name="pss-sampler", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
