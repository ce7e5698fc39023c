"""Start-up costs a user pays before any sandbox runs: ``import rlm_core`` and ``rlm --help``.

Each sample is a fresh interpreter (a warm file cache, as on a second run), so the figure is
what a script or a shell command pays; the interpreter's own start-up is measured alone and
reported beside them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import Stat


def _seconds(argv: list[str], repeats: int) -> Stat:
    subprocess.run(argv, check=True, capture_output=True)  # warm the file cache once
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return Stat.of(samples)


def python_alone_s(repeats: int) -> Stat:
    """``python -c pass``: the floor under the two figures below."""
    return _seconds([sys.executable, "-c", "pass"], repeats)


def import_rlm_core_s(repeats: int) -> Stat:
    """``python -c "import rlm_core"`` (public names load on first use)."""
    return _seconds([sys.executable, "-c", "import rlm_core"], repeats)


def cli_help_s(repeats: int) -> Stat:
    """``rlm --help``, through the installed console script."""
    script = Path(sys.executable).with_name("rlm")
    return _seconds([str(script), "--help"], repeats)
