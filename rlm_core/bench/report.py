"""Summaries of bench records: per task x length x method (x backend) rows, JSON, Markdown, PNG.

A row's score is the mean over items of each item's mean over repeats; its 95% confidence
interval is Student's t over those item means (clipped to [0, 1]). ``repeat_sd`` is the mean
within-item standard deviation across repeats: the run-to-run noise users ask about.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlm_core.bench.tasks import format_length

__all__ = ["Row", "invariance", "summarize", "write_json", "write_markdown", "write_plot"]

Row = dict[str, Any]

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom; 1.96 beyond.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def _ci95(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean
    t = _T975[len(values) - 2] if len(values) - 1 <= len(_T975) else 1.96
    half = t * statistics.stdev(values) / math.sqrt(len(values))
    return max(0.0, mean - half), min(1.0, mean + half)


def _p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "p90": _p90(values)}


def summarize(records: Sequence[dict[str, Any]]) -> list[Row]:
    """One row per (task, length, method, backend)."""
    groups: dict[tuple[str, int, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["task"], int(r["length"]), r["method"], r["interpreter"]), []).append(
            r
        )
    rows = []
    for (task, length, method, backend), rs in sorted(groups.items()):
        per_item: dict[str, list[float]] = {}
        for r in rs:
            per_item.setdefault(r["item_id"], []).append(float(r["score"]))
        item_means = [statistics.fmean(v) for v in per_item.values()]
        low, high = _ci95(item_means)
        spreads = [statistics.pstdev(v) for v in per_item.values() if len(v) > 1]
        rows.append(
            {
                "task": task,
                "length": length,
                "method": method,
                "interpreter": backend,
                "items": len(per_item),
                "runs": len(rs),
                "score": statistics.fmean(item_means),
                "ci95": [low, high],
                "repeat_sd": statistics.fmean(spreads) if spreads else None,
                "tokens": _spread([r["tokens"] for r in rs]),
                "usd": _spread([r["usd"] for r in rs]),
                "seconds": _spread([r["seconds"] for r in rs]),
                "failures": dict(Counter(r["failure"] for r in rs if r["failure"])),
                "cut": sum(1 for r in rs if r.get("cut")),
            }
        )  # fmt: skip
    return rows


def invariance(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs whose answer differs between backends (same item, method and repeat)."""
    by_run: dict[tuple[str, str, int], dict[str, str]] = {}
    for r in records:
        if r["interpreter"] == "-":
            continue
        run = (r["item_id"], r["method"], int(r["repeat"]))
        by_run.setdefault(run, {})[r["interpreter"]] = (
            f"[{r['failure']}]" if r["failure"] else " ".join(str(r["answer"]).split())
        )
    differing = []
    for (item_id, method, repeat), answers in sorted(by_run.items()):
        if len(answers) > 1 and len(set(answers.values())) > 1:
            differing.append(
                {"item_id": item_id, "method": method, "repeat": repeat, "answers": answers}
            )
    return differing


def write_json(
    path: Path, meta: dict[str, Any], rows: list[Row], differing: list[dict[str, Any]]
) -> None:
    """The report as JSON: the run's settings, the rows, and the backend differences."""
    backends = sorted({r["interpreter"] for r in rows} - {"-"})
    body = {
        "meta": meta,
        "rows": rows,
        "invariance": {"backends": backends, "differing": differing},
    }
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")


def _fmt_failures(failures: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(failures.items())) or "-"


def write_markdown(
    path: Path,
    meta: dict[str, Any],
    rows: list[Row],
    differing: list[dict[str, Any]],
    plot: str | None,
) -> None:
    """The report as a Markdown page: settings, the table, the plot, backend differences."""
    lines = [
        "# rlm bench report",
        "",
        f"Model `{meta['model']}`; tasks {', '.join(meta['tasks'])}; lengths "
        f"{', '.join(format_length(n) for n in meta['lengths'])} tokens (chars / 4); "
        f"{meta['n']} items per task and length, {meta['repeats']} repeat(s), seed {meta['seed']}.",
        "Score: mean over items, 95% CI (Student's t over item means). Tokens, USD and seconds "
        "are per query (mean / p90).",
        "",
        "| task | length | method | backend | items | score | 95% CI | tokens | USD | seconds "
        "| failures |",
        "| --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        cut = f" (cut {r['cut']})" if r["cut"] else ""
        lines.append(
            f"| {r['task']} | {format_length(r['length'])} | {r['method']}{cut} "
            f"| {r['interpreter']} "
            f"| {r['items']} | {r['score']:.3f} | {r['ci95'][0]:.2f}-{r['ci95'][1]:.2f} "
            f"| {r['tokens']['mean']:,.0f} / {r['tokens']['p90']:,.0f} "
            f"| {r['usd']['mean']:.4f} / {r['usd']['p90']:.4f} "
            f"| {r['seconds']['mean']:.2f} / {r['seconds']['p90']:.2f} "
            f"| {_fmt_failures(r['failures'])} |"
        )
    if plot:
        lines += ["", f"![score against input length]({plot})"]
    backends = sorted({r["interpreter"] for r in rows} - {"-"})
    if len(backends) > 1:
        lines += ["", f"## Backend invariance ({', '.join(backends)})", ""]
        if not differing:
            lines.append("Every run gave the same answer on every backend.")
        for d in differing:
            shown = "; ".join(f"{b}: `{a[:80]}`" for b, a in sorted(d["answers"].items()))
            lines.append(f"- {d['item_id']} {d['method']} repeat {d['repeat']}: {shown}")
    if meta.get("stopped_by_cap"):
        lines += ["", f"Stopped early: the next run would have passed --max-usd {meta['max_usd']}."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# Methods often score alike; a line style and marker each keep overlapping lines visible.
_STYLES = {"direct": ("-", "o"), "rlm": ("--", "s"), "rlm-depth2": (":", "^")}


def write_plot(path: Path, rows: list[Row]) -> bool:
    """Score against length per method, one panel per task; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # headless: no display on servers and in CI
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 2.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        series: dict[str, list[Row]] = {}
        for r in rows:
            if r["task"] == task:
                label = (
                    r["method"]
                    if r["interpreter"] in ("-", "deno")
                    else f"{r['method']} ({r['interpreter']})"
                )
                series.setdefault(label, []).append(r)
        for label, rs in sorted(series.items()):
            rs.sort(key=lambda r: r["length"])
            x = [r["length"] for r in rs]
            y = [r["score"] for r in rs]
            err = [[r["score"] - r["ci95"][0] for r in rs], [r["ci95"][1] - r["score"] for r in rs]]
            style = _STYLES.get(rs[0]["method"], ("-", "o"))
            ax.errorbar(x, y, yerr=err, linestyle=style[0], marker=style[1], capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xticks(sorted({r["length"] for r in rows if r["task"] == task}))
        ax.set_xticklabels(
            [format_length(n) for n in sorted({r["length"] for r in rows if r["task"] == task})]
        )
        ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("input tokens (chars/4)", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0][0].set_ylabel("score")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True
