"""``rlm bench``: the command line of the benchmark harness (registered by ``rlm_core.cli``).

``rlm bench sniah,oolong,oolong-pairs --model scripted:reference --lengths 8k,128k --n 10``
generates the items, runs every method on every backend, and writes ``results.jsonl``,
``report.json``, ``report.md`` and ``plot.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rlm_core.cli_options import add_model_options

__all__ = ["add_parser", "main"]


def add_parser(sub: Any) -> None:
    """Add the ``bench`` subcommand to the ``rlm`` parser's subparsers."""
    p = sub.add_parser("bench", help="measure answer quality, cost and latency of RLM vs direct")
    p.add_argument(
        "tasks",
        help="comma-separated: sniah, oolong, oolong-pairs, or file:PATH.jsonl "
        "(a local OOLONG-synth or RULER NIAH file)",
    )
    add_model_options(p, model_help="litellm model string or scripted:...", required=True)
    p.add_argument("--lengths", default="8k,32k", help="input lengths in tokens (chars / 4)")
    p.add_argument("--n", type=int, default=10, help="items per task and length (default 10)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each item (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated items")
    p.add_argument("--haystack", default="distractor", choices=["distractor", "noise"])
    p.add_argument("--methods", default="direct,rlm,rlm-depth2", help="direct, rlm, rlm-depth2")
    p.add_argument("--interpreter", "-i", default="deno", help="backends, comma-separated")
    p.add_argument("--context-window", default="128k", help="tokens the direct method may send")
    p.add_argument("--max-usd", type=float, help="stop before a run that would pass this")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run (default 600)")
    p.add_argument("--concurrency", type=int, default=4, help="runs at once (default 4)")
    p.add_argument("--max-calls", type=int, default=8, help="model calls in flight at once")
    p.add_argument("--rpm", type=float, help="model calls started per minute, at most")
    p.add_argument("--max-iterations", type=int, default=10, help="RLM steps per run")
    p.add_argument(
        "--cell-timeout",
        type=float,
        default=600.0,
        help="seconds per REPL step (default 600: depth-2 steps wait for whole child runs)",
    )
    p.add_argument("--max-llm-calls", type=int, default=200, help="sub-calls per RLM run")
    p.add_argument("--out", default="rlm-bench", help="folder for results and reports")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _items(args: argparse.Namespace, lengths: list[int]) -> tuple[list[Any], list[str]]:
    from rlm_core.bench.loaders import load_items
    from rlm_core.bench.tasks import generate

    items = []
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for task in tasks:
        if task.startswith("file:"):
            items.extend(load_items(task[5:], limit=args.n))
            continue
        for length in lengths:
            items.extend(generate(task, length, args.n, seed=args.seed, haystack=args.haystack))
    return items, tasks


def _check(config: Any) -> None:
    """Fail on a bad model, method or backend name before anything runs."""
    from rlm_core.bench.policies import resolve_models
    from rlm_core.bench.runner import METHODS
    from rlm_core.errors import ConfigError
    from rlm_core.registry import load, parse_spec

    resolve_models(config.model, config.sub_model, config.api_base)
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown or not config.methods:
        raise ConfigError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if any(METHODS[m] is not None for m in config.methods):
        for spec in config.interpreters:
            load(parse_spec(spec)[0])  # says which backends are installed, and how to add one


def main(args: argparse.Namespace) -> int:
    """Run ``rlm bench``; returns the exit status."""
    import anyio

    from rlm_core.bench import report
    from rlm_core.bench.runner import BenchConfig, plan, run_jobs
    from rlm_core.bench.tasks import parse_lengths
    from rlm_core.errors import ConfigError

    if args.n < 1 or args.repeats < 1:
        raise ConfigError("--n and --repeats must be at least 1")
    lengths = parse_lengths(args.lengths)
    config = BenchConfig(
        model=args.model,
        sub_model=args.sub_model,
        api_base=args.api_base,
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        interpreters=tuple(i.strip() for i in args.interpreter.split(",") if i.strip()),
        repeats=args.repeats,
        context_window=parse_lengths(args.context_window)[0],
        max_usd=args.max_usd,
        item_timeout_s=args.timeout,
        concurrency=args.concurrency,
        max_concurrent_calls=args.max_calls,
        calls_per_minute=args.rpm,
        max_iterations=args.max_iterations,
        max_llm_calls=args.max_llm_calls,
        cell_timeout_s=args.cell_timeout,
    )
    _check(config)
    items, tasks = _items(args, lengths)
    jobs = plan(items, config)
    out = Path(args.out)
    results_path = out / "results.jsonl"
    started = time.perf_counter()
    progress = _Progress(len(jobs), quiet=args.quiet)
    with progress:
        records, skipped, stopped = anyio.run(
            lambda: run_jobs(jobs, config, results_path, on_record=progress.update)
        )
    rows = report.summarize(records)
    differing = report.invariance(records)
    meta = {
        "model": config.model,
        "sub_model": config.sub_model,
        "tasks": tasks,
        "lengths": sorted({i.length for i in items}),
        "n": args.n,
        "repeats": config.repeats,
        "seed": args.seed,
        "methods": list(config.methods),
        "interpreters": list(config.interpreters),
        "context_window": config.context_window,
        "token_rule": "characters / 4",
        "runs": len(records),
        "skipped_as_finished": skipped,
        "stopped_by_cap": stopped,
        "max_usd": config.max_usd,
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    plot_path = out / "plot.png"
    has_plot = report.write_plot(plot_path, rows) if rows else False
    report.write_json(out / "report.json", meta, rows, differing)
    report.write_markdown(
        out / "report.md", meta, rows, differing, "plot.png" if has_plot else None
    )
    note = ", stopped before passing --max-usd" if stopped else ""
    print(
        f"rlm bench: {len(records)} runs ({skipped} finished earlier, skipped), "
        f"{meta['wall_time_s']} s{note}",
        file=sys.stderr,
    )
    if differing:
        print(
            f"rlm bench: {len(differing)} runs gave different answers on different backends "
            "(listed in report.md)",
            file=sys.stderr,
        )
    for path in (results_path, out / "report.json", out / "report.md"):
        print(path)
    if has_plot:
        print(plot_path)
    return 0


class _Progress:
    """A rich progress bar: runs done, running mean score and USD spent."""

    def __init__(self, total: int, *, quiet: bool) -> None:
        self.total = total
        self.quiet = quiet
        self.score = 0.0
        self.usd = 0.0
        self.count = 0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("bench"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("score {task.fields[score]:.3f}  ${task.fields[usd]:.4f}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("bench", total=self.total, score=0.0, usd=0.0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def update(self, record: dict[str, Any] | None, finished: int) -> None:
        if record is not None:
            self.count += 1
            self.score += float(record["score"])
            self.usd += float(record["usd"])
        if self._bar is not None:
            mean = self.score / self.count if self.count else 0.0
            self._bar.update(self._task, completed=finished, score=mean, usd=self.usd)
