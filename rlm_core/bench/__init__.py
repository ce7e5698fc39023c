"""``rlm bench``: answer quality, cost and latency of RLM methods against a direct model call.

Tasks are generated locally from a seed (:mod:`~rlm_core.bench.tasks`) or loaded from official
files (:mod:`~rlm_core.bench.loaders`), scored like the benchmarks score them
(:mod:`~rlm_core.bench.scoring`), run resumably (:mod:`~rlm_core.bench.runner`) and reported
with confidence intervals (:mod:`~rlm_core.bench.report`). ``docs/bench.md`` shows a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlm_core._lazy import attach

if TYPE_CHECKING:
    from rlm_core.bench.loaders import load_items
    from rlm_core.bench.policies import ScriptedModel, resolve_models
    from rlm_core.bench.runner import METHODS, BenchConfig, Job, plan, run_jobs
    from rlm_core.bench.scoring import oolong_score, pairs_f1, score, string_match_all
    from rlm_core.bench.tasks import CHARS_PER_TOKEN, Item, generate, parse_lengths

__all__ = [
    "CHARS_PER_TOKEN",
    "METHODS",
    "BenchConfig",
    "Item",
    "Job",
    "ScriptedModel",
    "generate",
    "load_items",
    "oolong_score",
    "pairs_f1",
    "parse_lengths",
    "plan",
    "resolve_models",
    "run_jobs",
    "score",
    "string_match_all",
]

__getattr__, __dir__ = attach(__name__, __file__, __all__)
