"""Summaries, ratios, the Rich table, the JSON file and the PNG chart."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.scenarios import METRICS, SystemResult

COLUMNS = list(METRICS)


def median(result: SystemResult, metric: str) -> float | None:
    values = result.values.get(metric)
    return statistics.median(values) if values else None


def best_peer(results: list[SystemResult], metric: str) -> float | None:
    """Best median among the peers (neither offload nor a raw reference)."""
    _, higher = METRICS[metric]
    values = [
        m
        for r in results
        if not r.reference
        and not r.name.startswith("offload")
        and (m := median(r, metric)) is not None
    ]
    if not values:
        return None
    return max(values) if higher else min(values)


def reference_of(results: list[SystemResult], backend: str) -> SystemResult | None:
    return next((r for r in results if r.reference and r.backend == backend), None)


def ratios(results: list[SystemResult], r: SystemResult, metric: str) -> dict[str, float]:
    """value / best peer and value / raw reference of the system's backend."""
    value = median(r, metric)
    out: dict[str, float] = {}
    if value is None:
        return out
    best = best_peer(results, metric)
    if best:
        out["best_peer"] = value / best
    ref = reference_of(results, r.backend)
    if ref is not None and ref is not r and (refv := median(ref, metric)):
        out[ref.name] = value / refv
    return out


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float) -> str:
    # Two significant digits for small ratios (0.0042) so nothing prints as 0.00.
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def _cell(results: list[SystemResult], r: SystemResult, metric: str) -> str:
    values = r.values.get(metric)
    if not values:
        return r.notes.get(metric, "[dim]—[/dim]")
    med = statistics.median(values)
    text = _fmt(med)
    if len(values) > 1:
        text += f"\n[dim]{_fmt(min(values))}–{_fmt(max(values))}[/dim]"
    rat = ratios(results, r, metric)
    parts = []
    if "best_peer" in rat:
        parts.append(f"{_ratio(rat['best_peer'])}×peer")
    parts += [f"{_ratio(v)}×raw" for k, v in rat.items() if k != "best_peer"]
    if parts:
        text += "\n[cyan]" + " ".join(parts) + "[/cyan]"
    return text


def print_table(results: list[SystemResult], title: str) -> None:
    console = Console(width=max(Console().width, 190))
    table = Table(title=title, show_lines=True, title_justify="left")
    table.add_column("system", no_wrap=True)
    for metric in COLUMNS:
        unit, higher = METRICS[metric]
        arrow = "↑" if higher else "↓"
        table.add_column(f"{metric}\n{unit} {arrow}", justify="right")
    for r in results:
        label = f"[bold]{r.name}[/bold]\n[dim]{r.backend}{' · raw ref' if r.reference else ''}"
        label += f"\n{r.config}[/dim]" if r.config else "[/dim]"
        if r.status != "ok" and not r.values:
            # The reason goes under the name (the widest column) rather than into a metric cell.
            colour = "yellow" if r.status == "unavailable" else "red"
            status = "not available" if r.status == "unavailable" else r.status
            reason = r.reason.replace("[", r"\[")
            label += f"\n[{colour}]{status}: {reason}[/{colour}]"
            table.add_row(label, *["[dim]—[/dim]"] * len(COLUMNS))
            continue
        cells = [_cell(results, r, m) for m in COLUMNS]
        if r.status != "ok":  # partial numbers, then failed: say so in the first empty cell
            reason = r.reason.replace("[", r"\[")
            idx = next(
                (i for i, m in enumerate(COLUMNS) if not r.values.get(m) and m not in r.notes), 0
            )
            cells[idx] = f"[red]failed: {reason}[/red]"
        table.add_row(label, *cells)
    console.print(table)
    console.print(
        "[dim]median (min–max over repeats); ×peer = value / best peer (celery, dramatiq, arq, "
        "rq, procrastinate), ×raw = value / raw reference of the same backend. ↑ higher is "
        "better, ↓ lower is better.[/dim]"
    )


def markdown_table(results: list[SystemResult]) -> str:
    """The same table as GitHub-flavoured Markdown, for docs/benchmarks.md."""
    head = ["system"] + [f"{m} ({METRICS[m][0]} {'↑' if METRICS[m][1] else '↓'})" for m in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [f"**{r.name}**<br>{r.backend}{' · raw ref' if r.reference else ''}"]
        for metric in COLUMNS:
            values = r.values.get(metric)
            if not values:
                cells.append(r.notes.get(metric, "—") if r.status == "ok" else "—")
                continue
            text = _fmt(statistics.median(values))
            if len(values) > 1:
                text += f"<br>({_fmt(min(values))}–{_fmt(max(values))})"
            rat = ratios(results, r, metric)
            parts = [f"{_ratio(rat['best_peer'])}×peer"] if "best_peer" in rat else []
            parts += [f"{_ratio(v)}×raw" for k, v in rat.items() if k != "best_peer"]
            if parts:
                text += "<br>" + " ".join(parts)
            cells.append(text)
        if r.status != "ok" and not r.values:
            cells[1] = f"{r.status}: {r.reason}"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_json(results: list[SystemResult], meta: dict[str, Any]) -> dict[str, Any]:
    systems = []
    for r in results:
        entry = asdict(r)
        entry["summary"] = {
            m: {
                "median": statistics.median(v),
                "min": min(v),
                "max": max(v),
                "unit": METRICS[m][0],
                "ratios": ratios(results, r, m),
            }
            for m, v in r.values.items()
            if v
        }
        systems.append(entry)
    return {"meta": meta, "systems": systems}


def write_json(path: str, data: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2)


def render_chart(results: list[SystemResult], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.values.get("drain") or r.values.get("pickup_p50")]
    if not shown:
        return
    names = [r.name for r in shown]
    colours = [
        "tab:green" if r.name.startswith("offload") else "tab:gray" if r.reference else "tab:blue"
        for r in shown
    ]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(shown) + 2))
    for ax, metric, label in (
        (axes[0], "drain", "drain rate, jobs/s (higher is better)"),
        (axes[1], "pickup_p50", "pick-up latency p50, ms (lower is better)"),
    ):
        meds = [median(r, metric) or 0.0 for r in shown]
        lows = [m - min(r.values.get(metric) or [m]) for r, m in zip(shown, meds, strict=True)]
        highs = [max(r.values.get(metric) or [m]) - m for r, m in zip(shown, meds, strict=True)]
        ys = range(len(shown))
        ax.barh(ys, meds, xerr=[lows, highs], color=colours, capsize=3)
        ax.set_yticks(list(ys), names)
        ax.invert_yaxis()
        ax.set_title(label)
        for y, m, hi in zip(ys, meds, highs, strict=True):
            if m:  # label right of the error bar so they do not overlap
                ax.text(m + hi, y, f"  {_fmt(m)}", va="center", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    # Raw references are 10-100x the peers: log scales keep every bar readable.
    axes[0].set_xscale("log")
    axes[1].set_xscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
