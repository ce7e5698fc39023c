"""Command line: every measurement for one backend, or the batch figures; a table, then JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any

import anyio

from benchmarks import batch, concurrent, harness, loop, startup
from rlm_core.registry import parse_spec

MB = 1_000_000


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--backend", help="interpreter name or spec, e.g. deno")
    parser.add_argument("--json", action="store_true", help="end with one JSON object line")
    parser.add_argument("--repeats", type=int, default=5, help="samples per figure")
    parser.add_argument(
        "--sizes",
        default="1,10,100,1000",
        help="variable sizes to bind, in MB (1000 only where the backend allows it)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, smaller sizes")
    parser.add_argument(
        "--no-loop",
        action="store_true",
        help="skip the RLM loop figures (rlm_overhead_s, batched_32_s)",
    )
    parser.add_argument(
        "--batch",
        action="store_true",
        help="measure rlm batch instead: rows/s, peak memory, host CPU per model call",
    )
    parser.add_argument(
        "--batch-backends",
        default="subprocess,deno",
        help="backends for --batch, comma-separated (default: subprocess,deno)",
    )
    parser.add_argument("--rows", type=int, default=1000, help="rows per --batch run")
    parser.add_argument(
        "--startup",
        action="store_true",
        help="measure start-up instead: import rlm_core and rlm --help, in fresh processes",
    )
    parser.add_argument(
        "--concurrency", type=int, help="rows at once in --batch (default: what memory allows)"
    )
    parser.add_argument(
        "--concurrent",
        type=int,
        metavar="N",
        help="measure N RLM runs at once, each with a 1 MB input: seconds and peak memory",
    )
    parser.add_argument(
        "--concurrent-backends",
        default="deno,deno://?sessions_per_process=16",
        help="backends for --concurrent, comma-separated",
    )
    args = parser.parse_args(argv)
    if not (args.batch or args.startup or args.backend or args.concurrent):
        parser.error("give --backend NAME, --batch, --startup or --concurrent N")
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure the backend named in ``args``; returns the JSON report."""
    factory = harness.factory_for(args.backend, {})
    repeats = 2 if args.quick else args.repeats
    report: dict[str, Any] = {"backend": parse_spec(args.backend)[0], "details": {}}
    details: dict[str, Any] = report["details"]

    def put(key: str, stat: harness.Stat) -> None:
        report[key] = round(stat.median, 6)
        details[key] = stat.to_json()

    caps = factory().capabilities
    put("cold_start_s", await harness.cold_start(factory, repeats))
    if harness.supports_option(args.backend, "warm_pool"):
        pooled = harness.factory_for(args.backend, {"warm_pool": 1})
        put("pooled_start_s", await harness.pooled_start(pooled, repeats))
    interp = factory()
    await interp.start()
    try:
        put("execute_ms", await harness.execute_round_trip(interp, 50 if args.quick else 200))
        put(
            "tool_call_ms",
            await harness.tool_callback(interp, 200 if args.quick else 1000, repeats),
        )
    finally:
        await interp.aclose()
    limit = caps.max_variable_bytes
    for size_mb in (int(s) for s in args.sizes.split(",") if s):
        if args.quick and size_mb > 10:
            continue
        if limit is not None and size_mb * MB > limit:
            details[f"bind_{_label(size_mb)}_s"] = f"skipped: max_variable_bytes is {limit:,}"
            continue
        bind_repeats = repeats if size_mb <= 100 else 1
        put(f"bind_{_label(size_mb)}_s", await harness.bind(factory, size_mb * MB, bind_repeats))
    put("timeout_return_s", await harness.timeout_return(factory, 1 if args.quick else 3))
    if not args.no_loop:
        # The loop has its own event loop handling; run it off this one.
        put(
            "rlm_overhead_s",
            await anyio.to_thread.run_sync(loop.rlm_overhead, args.backend, repeats),
        )
        put("batched_32_s", await anyio.to_thread.run_sync(loop.batched_32, args.backend, repeats))
        put("host_cpu_per_call_ms", await anyio.to_thread.run_sync(batch.host_cpu_per_call_ms, 3))
    report["peak_rss_mb"] = harness.peak_rss_mb()
    report["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    return report


def _label(size_mb: int) -> str:
    return f"{size_mb // 1000}gb" if size_mb >= 1000 else f"{size_mb}mb"


def _table(report: dict[str, Any]) -> str:
    rows = [
        f"backend: {report['backend']}",
        f"{'figure':<20}{'median':>12}{'min':>12}{'max':>12}{'n':>4}",
    ]
    for key, stat in report["details"].items():
        if isinstance(stat, dict):
            rows.append(
                f"{key:<20}{stat['median']:>12.4f}{stat['min']:>12.4f}{stat['max']:>12.4f}{stat['n']:>4}"
            )
        else:
            rows.append(f"{key:<20}  {stat}")
    rows.append(f"peak RSS (MB): {report['peak_rss_mb']}")
    return "\n".join(rows)


def run_batch_figures(args: argparse.Namespace) -> dict[str, Any]:
    """Measure ``rlm batch`` on each of ``args.batch_backends``; returns the JSON report."""
    report: dict[str, Any] = {"rows": args.rows, "backends": {}}
    repeats = 2 if args.quick else 5
    report["host_cpu_per_call_ms"] = batch.host_cpu_per_call_ms(repeats).to_json()
    report["host_cpu_litellm_per_call_ms"] = batch.host_cpu_per_call_ms(
        repeats, direct=False
    ).to_json()
    for backend in (b.strip() for b in args.batch_backends.split(",") if b.strip()):
        report["backends"][backend] = batch.batch_rows(backend, args.rows, args.concurrency)
    report["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    return report


def _batch_table(report: dict[str, Any]) -> str:
    cpu = report["host_cpu_per_call_ms"]
    rows = [
        f"rlm batch, {report['rows']} rows (3 model calls of 200 ms each per row)",
        f"{'backend':<12}{'concurrency':>12}{'seconds':>10}{'rows/s':>10}{'peak MB':>10}",
    ]
    for name, r in report["backends"].items():
        rows.append(
            f"{name:<12}{r['concurrency']:>12}{r['seconds']:>10}{r['rows_per_s']:>10}"
            f"{r['peak_mb']:>10}"
        )
    for label, stat in (("", cpu), (" through litellm", report["host_cpu_litellm_per_call_ms"])):
        rows.append(
            f"host CPU per model call{label}: {stat['median']:.2f} ms (min {stat['min']:.2f}, "
            f"max {stat['max']:.2f}, n={stat['n']})"
        )
    return "\n".join(rows)


def run_startup_figures(args: argparse.Namespace) -> dict[str, Any]:
    """Measure start-up in fresh processes; returns the JSON report."""
    repeats = 5 if args.quick else max(args.repeats, 10)
    details = {
        "python_alone_s": startup.python_alone_s(repeats).to_json(),
        "import_rlm_core_s": startup.import_rlm_core_s(repeats).to_json(),
        "rlm_help_s": startup.cli_help_s(repeats).to_json(),
    }
    report: dict[str, Any] = {key: stat["median"] for key, stat in details.items()}
    report["details"] = details
    report["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; prints a table and, with --json, a final JSON line."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    args = _parse(argv)
    if args.batch:
        report = run_batch_figures(args)
        print(_batch_table(report))
        if args.json:
            print(json.dumps(report, sort_keys=True))
        return 0
    if args.concurrent:
        rows = [
            concurrent.concurrent_runs(spec.strip(), args.concurrent)
            for spec in args.concurrent_backends.split(",")
            if spec.strip()
        ]
        print(f"{'backend':<36}{'runs':>6}{'seconds':>9}{'peak PSS MB':>13}")
        for r in rows:
            print(f"{r['backend']:<36}{r['runs']:>6}{r['seconds']:>9}{r['peak_pss_mb']:>13}")
        if args.json:
            print(json.dumps({"concurrent": rows}, sort_keys=True))
        return 0
    if args.startup:
        report = run_startup_figures(args)
        report["backend"], report["peak_rss_mb"] = "(none: start-up)", harness.peak_rss_mb()
        print(_table(report))
        if args.json:
            print(json.dumps(report, sort_keys=True))
        return 0
    report = anyio.run(run, args)
    print(_table(report))
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
