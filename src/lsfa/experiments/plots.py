"""PNG plots for ``lsfa experiment report``, drawn from the report tables (never from anything else).

Figures are built with matplotlib's object API on the Agg canvas, so no display and no global backend
switch are needed (``matplotlib.pyplot`` is never imported). One panel per corpus; bars carry the
standard deviation across seeds as error bars when there are several seeds. A plot with nothing to
show still gets written, saying so, so that links in a results page never break.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsfa.data.schemes import LENGTH_BUCKETS
from lsfa.experiments.tables import ERROR_COLUMNS, Table

OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)}
PLOTS = {
    "f1_by_model_attention": "F1 by model and attention",
    "error_categories": "Error categories",
    "f1_by_length": "F1 by entity length",
}


def write_plots(tables: dict[str, Table], out_dir: Path) -> dict[str, Path]:
    """Write the three PNGs into ``out_dir``; returns name -> path."""
    drawers = {
        "f1_by_model_attention": (_draw_f1_by_model_attention, tables.get("main")),
        "error_categories": (_draw_error_categories, tables.get("errors")),
        "f1_by_length": (_draw_f1_by_length, tables.get("by_length")),
    }
    paths = {}
    for name, (draw, table) in drawers.items():
        rows = table.rows if table is not None else []
        paths[name] = _save(out_dir / f"{name}.png", PLOTS[name], rows, draw)
    return paths


def _save(path: Path, title: str, rows: list[dict[str, Any]], draw) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    corpora = list(dict.fromkeys(row["corpus"] for row in rows))
    height = max(3.5, 0.35 * max((sum(r["corpus"] == c for r in rows) for c in corpora), default=1) + 1.5)
    figure = Figure(figsize=(9 * max(len(corpora), 1), height), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    if not corpora:
        axes = figure.add_subplot()
        axes.text(0.5, 0.5, "no cells with these results", ha="center", va="center")
        axes.set_axis_off()
    for index, corpus in enumerate(corpora, 1):
        axes = figure.add_subplot(1, len(corpora), index)
        axes.set_title(corpus)
        draw(axes, [row for row in rows if row["corpus"] == corpus])
    figure.savefig(path, dpi=120)
    return path


def _mean(value: dict[str, Any] | None) -> float:
    return value["mean"] if value else float("nan")


def _std(value: dict[str, Any] | None) -> float:
    return value["std"] if value and value["std"] is not None else 0.0


def _draw_f1_by_model_attention(axes, rows: list[dict[str, Any]]) -> None:
    """Horizontal bars: one per system (model, mode), colour per attention setting."""
    labels = [f"{row['model']} {row['mode']} {row['attention']}".replace(" -", "") for row in rows]
    attentions = list(dict.fromkeys(row["attention"] for row in rows))
    colours = {name: f"C{k % 10}" for k, name in enumerate(attentions)}
    positions = range(len(rows))
    axes.barh(
        list(positions),
        [_mean(row["f1"]) for row in rows],
        xerr=[_std(row["f1"]) for row in rows],
        color=[colours[row["attention"]] for row in rows],
    )
    _mark_missing(axes, [k for k, row in enumerate(rows) if row["f1"] is None])
    axes.set_yticks(list(positions), labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("strict span F1")
    handles = [_patch(colours[name], "no choice (encoder/peer)" if name == "-" else name) for name in attentions]
    axes.legend(handles=handles, fontsize=7, **OUTSIDE)


def _draw_error_categories(axes, rows: list[dict[str, Any]]) -> None:
    """Stacked horizontal bars of error counts per system."""
    labels = [row["system"] for row in rows]
    left = [0.0] * len(rows)
    positions = list(range(len(rows)))
    for k, name in enumerate(ERROR_COLUMNS):
        counts = [_mean(row[name]) if row[name] else 0.0 for row in rows]
        axes.barh(positions, counts, left=left, color=f"C{k}", label=name.replace("_", " "))
        left = [a + b for a, b in zip(left, counts, strict=True)]
    _mark_missing(axes, [k for k, row in enumerate(rows) if all(row[name] is None for name in ERROR_COLUMNS)])
    axes.set_yticks(positions, labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(left=0)
    axes.set_xlabel("errors (mean count over seeds)")
    axes.legend(fontsize=7, **OUTSIDE)


def _draw_f1_by_length(axes, rows: list[dict[str, Any]]) -> None:
    """Grouped bars: entity length buckets on x, one bar per system."""
    width = 0.8 / max(len(rows), 1)
    for k, row in enumerate(rows):
        xs = [bucket + (k - (len(rows) - 1) / 2) * width for bucket in range(len(LENGTH_BUCKETS))]
        values = [_mean(row[f"f1_{b}"]) for b in LENGTH_BUCKETS]
        errors = [_std(row[f"f1_{b}"]) for b in LENGTH_BUCKETS]
        missing = all(row[f"f1_{b}"] is None for b in LENGTH_BUCKETS)
        label = row["system"] + (" (no result)" if missing else "")
        axes.bar(xs, values, width=width, yerr=errors, color=f"C{k % 10}", label=label)
    axes.set_xticks(range(len(LENGTH_BUCKETS)), [f"{b} word{'s' if b != '1' else ''}" for b in LENGTH_BUCKETS])
    axes.set_ylim(0, 1)
    axes.set_ylabel("strict span F1")
    axes.legend(fontsize=7, **OUTSIDE)


def _mark_missing(axes, positions: list[int]) -> None:
    """Say 'no result' where a bar is missing, so an absent value is not read as zero."""
    for position in positions:
        axes.text(0.01, position, "no result", va="center", fontsize=7, color="grey")


def _patch(colour: str, label: str):
    from matplotlib.patches import Patch

    return Patch(color=colour, label=label)
