"""``rlm batch ROWS --output OUT.jsonl``: the command line of :func:`rlm_core.batch.run_batch`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rlm_core.cli_options import add_interpreter_option, add_model_options
from rlm_core.errors import ConfigError

__all__ = ["add_parser", "run"]

EXIT_OK, EXIT_INCOMPLETE = 0, 3


def add_parser(sub: Any) -> None:
    """Add the ``batch`` subcommand to the ``rlm`` parser's subparsers."""
    p = sub.add_parser(
        "batch",
        help="run an RLM on every row of a JSONL/CSV/Parquet file (resumable)",
        description="One RLM run per row; each result is appended to --output as it finishes. "
        "Rerun the same command to finish rows a crash or Ctrl-C left undone.",
    )
    p.add_argument("rows", help="input rows: a .jsonl, .csv or .parquet file")
    p.add_argument("--output", "-o", required=True, help="results JSONL (resumed if present)")
    p.add_argument("--signature", "-s", required=True, help="e.g. 'document, question -> answer'")
    p.add_argument("--id-field", default="id", help="field naming each row (default: id)")
    add_model_options(p)
    add_interpreter_option(p)
    p.add_argument("--max-iterations", type=int, help="steps per row before extract")
    p.add_argument(
        "--concurrency", "-j", type=int, help="rows at once (default: what memory allows)"
    )
    p.add_argument(
        "--rpm",
        action="append",
        default=[],
        metavar="[MODEL=]N",
        help="model requests per minute, per model (repeat with MODEL=N for one model)",
    )
    p.add_argument(
        "--tpm", action="append", default=[], metavar="[MODEL=]N", help="tokens per minute"
    )
    p.add_argument("--max-cost-usd", type=float, help="USD cap for the whole batch")
    p.add_argument("--max-tokens", type=int, help="token cap for the whole batch")
    p.add_argument("--retries", type=int, default=3, help="retries of transient failures")
    p.add_argument(
        "--executor",
        default="local",
        help="local (default), ray (RAY_ADDRESS or a local cluster) or ray://HOST:PORT",
    )
    p.add_argument("--trajectories", metavar="DIR", help="write each row's full result here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _rates(values: list[str], flag: str) -> float | dict[str, float] | None:
    if not values:
        return None
    rates: dict[str, float] = {}
    for value in values:
        model, sep, number = value.rpartition("=")
        try:
            rates[model if sep else "*"] = float(number)
        except ValueError:
            raise ConfigError(f"{flag} takes N or MODEL=N, not {value!r}") from None
    return rates


def run(args: argparse.Namespace) -> int:
    """Run ``rlm batch``; exit 0 when every row is done, 3 when the spend cap stopped it."""
    from rlm_core.batch import BatchJob, BatchLimits, RetryPolicy, run_batch

    options: dict[str, Any] = {}
    if args.max_iterations is not None:
        options["max_iterations"] = args.max_iterations
    job = BatchJob(
        args.signature,
        model=args.model,
        sub_model=args.sub_model,
        api_base=args.api_base,
        interpreter=args.interpreter,
        options=options,
        trajectories=args.trajectories,
    )
    limits = BatchLimits(
        requests_per_minute=_rates(args.rpm, "--rpm"),
        tokens_per_minute=_rates(args.tpm, "--tpm"),
        max_cost_usd=args.max_cost_usd,
        max_tokens=args.max_tokens,
    )
    if args.retries < 0:
        raise ConfigError("--retries must be 0 or more")
    summary = run_batch(
        job,
        args.rows,
        args.output,
        id_field=args.id_field,
        limits=limits,
        retry=RetryPolicy(retries=args.retries),
        concurrency=args.concurrency,
        executor=args.executor,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    print(
        f"rlm batch: {summary.ok} ok, {summary.failed} failed, {summary.skipped} already done; "
        f"{summary.tokens:,} tokens, ${summary.cost_usd:.4f}, {summary.duration_s:.1f} s "
        f"-> {args.output}",
        file=sys.stderr,
    )
    if summary.stopped:
        print(f"rlm batch: stopped early: {summary.stopped}", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_OK
