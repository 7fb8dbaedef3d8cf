"""``lsfa experiment report``: a grid's cells collected into tables shaped like the paper's.

Every number comes from a cell's ``metrics.json`` (an lsfa run or a peer such as spaCy, which writes the
same keys); seeds of the same system are aggregated as mean ± sample standard deviation. Nothing is
filled in: a value a cell does not have is ``None`` in JSON and ``-`` in Markdown, with a note saying
why (no test split, no encoder to compare with, a failed cell, ...).

Tables (paper numbering, Yano & Takamura 2026):
``main`` (2-3) strict P/R/F1 per model, mode and attention; ``attention_gain`` LS-FA minus LS-CA;
``lora`` (4) LoRA settings and trainable parameters; ``set`` (5) set-based P/R/F1; ``time`` (6) seconds per
training epoch and the ratio to the smallest encoder; ``inference`` (7) ms per sentence; ``errors`` (11-12)
error taxonomy; ``by_length`` F1 by entity length 1/2/3+; ``layer_patterns`` layer-group patterns ranked on dev;
``paper`` every number the paper published, each followed by the lsfa cells in the same role
(:mod:`lsfa.experiments.paper`).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsfa.data.schemes import LENGTH_BUCKETS
from lsfa.errors import LsfaError
from lsfa.eval.errors import ERROR_CATEGORIES
from lsfa.experiments import paper
from lsfa.experiments.grid import key_matches
from lsfa.experiments.systems import TAGGER
from lsfa.machine import cpu_label
from lsfa.models.catalogue import CATALOGUE, ENCODER_TYPES
from lsfa.models.meta import META_FILE
from lsfa.runs import CHECKPOINTS_DIR, METRICS_FILE, MODEL_DIR, RunFolder, RunMetrics
from lsfa.training.config import canonical_keys

ATTENTION_NAMES = {"full": "LS-FA", "causal": "LS-CA"}
KIND_ORDER = {"decoder": 0, "encoder": 1, "peer": 2}
ERROR_COLUMNS = tuple(name for name in ERROR_CATEGORIES if name != "exact_matches")


@dataclass
class CellResult:
    """One finished cell: its axes and its ``metrics.json``."""

    corpus: str
    model: str
    mode: str
    training: str
    attention: str
    seed: int
    system: str
    kind: str
    folder: Path
    metrics: dict[str, Any]

    @property
    def group(self) -> tuple[str, str, str, str]:
        """Cells differing only in seed are one row."""
        return (self.corpus, self.model, self.mode, self.attention)


@dataclass
class Table:
    """A report table: columns (key, header, format) and rows of raw values (stats are mean/std/n dicts)."""

    name: str
    title: str
    columns: list[tuple[str, str, str]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": [{"key": key, "header": header} for key, header, _ in self.columns],
            "rows": self.rows,
            "notes": self.notes,
        }


# --- collecting ----------------------------------------------------------------------------------------
def collect_cells(grid_dirs: str | Path | Sequence[str | Path], only: str | None = None) -> list[CellResult]:
    """Every ``metrics.json`` under the grid folder(s) with its axes (from ``cell.json``, else from the config).

    Several folders make one report (seeds or configurations run as separate grids, or a cell already
    published with another grid); ``only`` keeps the cells whose folder below its grid matches (a glob, or a
    substring, as ``lsfa experiment run --only``). The same cell (corpus, model, mode, attention, seed) found
    twice is refused: it would count as two seeds.
    """
    roots = _roots(grid_dirs)
    cells: list[CellResult] = []
    for root in roots:
        if not root.is_dir():
            raise LsfaError(f"{root}: no such folder (expected an `lsfa experiment run` output folder)")
        for path in sorted(root.rglob(METRICS_FILE)):
            if CHECKPOINTS_DIR in path.parts or not key_matches(path.parent.relative_to(root).as_posix(), only):
                continue
            metrics = RunMetrics.read(path).model_dump(exclude_unset=True)  # the typed record, its extra keys kept
            cells.append(_cell_result(path.parent, metrics))
    _refuse_repeated_cells(cells)
    return cells


def _roots(grid_dirs: str | Path | Sequence[str | Path]) -> list[Path]:
    """One grid folder or several, as a list of paths."""
    return [Path(grid_dirs)] if isinstance(grid_dirs, str | Path) else [Path(d) for d in grid_dirs]


def _refuse_repeated_cells(cells: list[CellResult]) -> None:
    seen: dict[tuple[Any, ...], Path] = {}
    for cell in cells:
        key = (*cell.group, cell.seed)
        if key in seen:
            raise LsfaError(
                f"{cell.folder}: the same cell as {seen[key]} ({'/'.join(map(str, key))}); "
                "leave one of the folders out or narrow --only"
            )
        seen[key] = cell.folder


def _cell_result(folder: Path, metrics: dict[str, Any]) -> CellResult:
    info: dict[str, Any] = {}
    if (folder / "cell.json").is_file():
        info = json.loads((folder / "cell.json").read_text())
    config = canonical_keys(metrics.get("config") or {})  # records written before finetune: say mode:
    system = info.get("system") or metrics.get("system") or TAGGER
    model = info.get("model") or (system if system != TAGGER else Path(str(config.get("model", "?"))).name)
    training = info.get("training") or (config.get("finetune") if system == TAGGER else system)
    return CellResult(
        corpus=info.get("corpus") or Path(str(config.get("corpus", "?"))).name,
        model=model,
        mode=info.get("mode") or str(training),
        training=str(training),
        attention=info.get("attention") or (metrics.get("attention") if system == TAGGER else "none") or "?",
        seed=int(info.get("seed", config.get("seed", 0))),
        system=system,
        kind=_kind(system, info.get("model_path") or config.get("model") or model, folder),
        folder=folder,
        metrics=metrics,
    )


def _kind(system: str, model: str, folder: Path) -> str:
    """decoder / encoder / peer: from the catalogue, else from the saved tagger's model type."""
    if system != TAGGER:
        return "peer"
    entry = CATALOGUE.get(str(model))
    if entry is not None:
        return entry.kind
    meta = folder / MODEL_DIR / META_FILE
    if meta.is_file():
        model_type = json.loads(meta.read_text()).get("model_type")
        return "encoder" if model_type in ENCODER_TYPES else "decoder"
    return "decoder"


def group_cells(
    cells: Iterable[CellResult], order_hint: dict[str, list[str]] | None = None
) -> dict[tuple[str, str, str, str], list[CellResult]]:
    """Cells by (corpus, model, mode, attention), in report order: corpus, decoders, encoders, peers.

    ``order_hint`` (``{"corpora": [...], "models": [...], "modes": [...]}``, from the grid file) keeps the
    order the grid was written in; names it does not list come after, alphabetically.
    """
    hint = order_hint or {}
    groups: dict[tuple[str, str, str, str], list[CellResult]] = {}
    for cell in cells:
        groups.setdefault(cell.group, []).append(cell)

    def position(axis: str, name: str) -> tuple[int, str]:
        names = hint.get(axis) or []
        return (names.index(name) if name in names else len(names), name)

    def order(key: tuple[str, str, str, str]) -> tuple[Any, ...]:
        first = groups[key][0]
        return (
            position("corpora", first.corpus),
            KIND_ORDER.get(first.kind, 0),
            position("models", first.model),
            position("modes", first.mode),
            _attention_rank(first),
        )

    return {key: sorted(groups[key], key=lambda c: c.seed) for key in sorted(groups, key=order)}


def _attention_rank(cell: CellResult) -> tuple[int, str]:
    return ({"causal": 0, "full": 1}.get(cell.attention, 2), cell.attention)


# --- statistics ------------------------------------------------------------------------------------------
def stat(values: Iterable[float | None]) -> dict[str, Any] | None:
    """Mean, sample std (None for one seed) and count of the values present; None when there are none."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    std = statistics.stdev(present) if len(present) > 1 else None
    return {"mean": statistics.fmean(present), "std": std, "n": len(present)}


def dig(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...`` or None when any level is missing."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def attention_label(cell: CellResult) -> str:
    """LS-FA / LS-CA / the layer pattern; '-' where attention is not a choice (encoders, peers)."""
    if cell.kind != "decoder":
        return "-"
    return ATTENTION_NAMES.get(cell.attention, cell.attention)


def system_label(cell: CellResult) -> str:
    """A short name for plots and error tables."""
    if cell.kind == "peer":
        return cell.model
    if cell.kind == "encoder":
        return f"{cell.model} {cell.mode}"
    return f"{cell.model} {cell.mode} {attention_label(cell)}"


def _identity(cell: CellResult) -> dict[str, Any]:
    return {
        "corpus": cell.corpus,
        "model": cell.model,
        "kind": cell.kind,
        "mode": cell.mode,
        "attention": attention_label(cell),
        "attention_setting": cell.attention,
        "system": system_label(cell),
    }


IDENTITY_COLUMNS = [("corpus", "corpus", "text"), ("model", "model", "text"), ("mode", "mode", "text"),
                    ("attention", "attention", "text")]  # fmt: skip


# --- tables ------------------------------------------------------------------------------------------------
def build_tables(
    cells: list[CellResult], split: str = "test", order_hint: dict[str, list[str]] | None = None
) -> dict[str, Table]:
    """All report tables from the collected cells, scored on ``split`` (test by default)."""
    groups = group_cells(cells, order_hint)
    builders: list[Callable[..., Table | None]] = [
        main_table,
        attention_gain_table,
        paper_table,
        lora_table,
        set_table,
        time_table,
        inference_table,
        errors_table,
        by_length_table,
        layer_patterns_table,
    ]
    tables = {}
    for build in builders:
        table = build(groups, split)
        if table is not None:
            tables[table.name] = table
    return tables


def _missing_split_note(groups, split: str) -> list[str]:
    missing = sorted({"/".join(key) for key, cells in groups.items() if any(split not in c.metrics for c in cells)})
    if not missing:
        return []
    return [f"no {split} results in: {', '.join(missing)} (e.g. test_split: null); shown as '-'"]


def _schedule_note(groups) -> list[str]:
    """Which cells had a smaller epoch budget than most, when they differ (e.g. cells sized to a time budget),
    and which had training ended by ``max_train_time``.

    Peers train on their own schedule (spaCy's steps), so they are left out. The budget is the configured
    maximum (``epochs``); early stopping may have ended a cell sooner (Table 6 gives the epochs run).
    """
    budgets: dict[float, list[str]] = {}
    for (corpus, *_), cells in groups.items():
        first = cells[0]
        epochs = dig(first.metrics, "ift", "effective_config", "epochs") or dig(first.metrics, "config", "epochs")
        if first.kind != "peer" and epochs is not None:
            budgets.setdefault(float(epochs), []).append(f"{corpus} {system_label(first)}")
    notes = []
    if len(budgets) > 1:
        usual = max(budgets, key=lambda epochs: len(budgets[epochs]))
        others = "; ".join(f"{e:g}: {', '.join(budgets[e])}" for e in sorted(budgets) if e != usual)
        notes.append(f"epoch budget: up to {usual:g} epochs, except (epochs: cells) {others}")
    stopped = [
        f"{corpus} {system_label(cell)} (after {cell.metrics.get('epochs_run')} epochs)"
        for (corpus, *_), cells in groups.items()
        for cell in cells
        if cell.metrics.get("stopped_by_max_train_time")
    ]
    if stopped:
        notes.append(f"training ended by its time budget (max_train_time): {', '.join(stopped)}")
    return notes


def _machine_note(groups) -> list[str]:
    """The CPU, precision and threads each cell ran with, when the cells did not all run alike: times measured on
    different machines or precisions are not comparable row by row."""
    conditions: dict[str, list[str]] = {}
    for (corpus, *_), cells in groups.items():
        for cell in cells:
            machine = cell.metrics.get("machine") or {}
            precision = cell.metrics.get("precision") or "?"
            where = f"{cpu_label(machine)}, {precision}, {machine.get('torch_threads') or '?'} thread(s)"
            conditions.setdefault(where, []).append(f"{corpus} {system_label(cell)}")
    if len(conditions) < 2:
        return []
    usual = max(conditions, key=lambda where: len(conditions[where]))
    others = "; ".join(f"{where}: {', '.join(cells)}" for where, cells in conditions.items() if where != usual)
    return [f"run on {usual}, except {others}"]


def _tokens_corpora(groups) -> list[str]:
    """Corpora of ``tokens`` tasks (a flat tag per word, e.g. part of speech): scored by token accuracy."""
    return sorted({key[0] for key, cells in groups.items() if any(c.metrics.get("task") == "tokens" for c in cells)})


def _tokens_note(groups, consequence: str) -> list[str]:
    """A note naming the tokens-task corpora of a table and what that means for it (nothing when there are none)."""
    corpora = _tokens_corpora(groups)
    return [f"{', '.join(corpora)}: a tag per word (task tokens), {consequence}"] if corpora else []


def _tokens_accuracy_note(groups) -> list[str]:
    return _tokens_note(groups, "so P = R = F1 = token accuracy")


def _no_spans_note(groups) -> list[str]:
    return _tokens_note(groups, "no spans: '-'")


def main_table(groups, split: str) -> Table:
    """Tables 2-3: strict span P/R/F1 per model, mode and attention, mean ± std over seeds."""
    table = Table(
        "main",
        f"Strict span micro P/R/F1 on {split} per model, mode and attention (paper Tables 2-3)",
        [*IDENTITY_COLUMNS, ("seeds", "seeds", "int"), ("precision", "P", "stat"), ("recall", "R", "stat"),
         ("f1", "F1", "stat")],
    )  # fmt: skip
    for cells in groups.values():
        row = _identity(cells[0]) | {"seeds": len(cells)}
        for key in ("precision", "recall", "f1"):
            row[key] = stat(dig(c.metrics, split, "micro", key) for c in cells)
        table.rows.append(row)
    table.notes += _missing_split_note(groups, split) + _tokens_accuracy_note(groups) + _schedule_note(groups)
    corpora = sorted({key[0] for key in groups})
    references = [f"{corpus} {f1:.3f}" for corpus in corpora if (f1 := paper.reference_f1(corpus)) is not None]
    if references and split == "test":
        table.notes.append(
            f"paper reference, {paper.QWEN} LS-FA LoRA ({paper.PAPER}), test F1: {', '.join(references)}; "
            "every published number is in the table 'lsfa beside the paper'"
        )
    return table


def attention_gain_table(groups, split: str) -> Table | None:
    """LS-FA minus LS-CA F1 for every decoder and mode trained both ways (same corpus, same seeds)."""
    by_system: dict[tuple[str, str, str], dict[str, list[CellResult]]] = {}
    for (corpus, model, mode, attention), cells in groups.items():
        if cells[0].kind == "decoder" and attention in ("full", "causal"):
            by_system.setdefault((corpus, model, mode), {})[attention] = cells
    pairs = {key: value for key, value in by_system.items() if len(value) == 2}
    if not pairs:
        return None
    table = Table(
        "attention_gain",
        f"LS-FA minus LS-CA, strict F1 on {split}",
        [("corpus", "corpus", "text"), ("model", "model", "text"), ("mode", "mode", "text"),
         ("ls_ca_f1", "LS-CA F1", "stat"), ("ls_fa_f1", "LS-FA F1", "stat"), ("gain", "gain (points)", "points")],
    )  # fmt: skip
    for (corpus, model, mode), both in pairs.items():
        causal = stat(dig(c.metrics, split, "micro", "f1") for c in both["causal"])
        full = stat(dig(c.metrics, split, "micro", "f1") for c in both["full"])
        gain = None if causal is None or full is None else 100 * (full["mean"] - causal["mean"])
        table.rows.append(
            {"corpus": corpus, "model": model, "mode": mode, "ls_ca_f1": causal, "ls_fa_f1": full, "gain": gain}
        )
    table.notes += _tokens_accuracy_note(groups)
    return table


def lora_table(groups, split: str) -> Table:
    """Table 4: LoRA settings with trainable parameters and their share of the model."""
    del split
    table = Table(
        "lora",
        "Training modes: LoRA settings, trainable parameters and % of the model (paper Table 4)",
        [("corpus", "corpus", "text"), ("model", "model", "text"), ("mode", "mode", "text"),
         ("training", "training", "text"), ("r", "r", "text"), ("alpha", "alpha", "text"),
         ("dropout", "dropout", "text"), ("target_modules", "target modules", "text"),
         ("trainable", "trainable", "int"), ("total", "total", "int"), ("trainable_pct", "% trainable", "pct")],
    )  # fmt: skip
    seen: set[tuple[str, str, str]] = set()
    for (corpus, model, mode, _), cells in groups.items():
        if (corpus, model, mode) in seen:
            continue
        seen.add((corpus, model, mode))
        cell = cells[0]
        lora = dig(cell.metrics, "config", "lora") if cell.training == "lora" else None
        parameters = cell.metrics.get("parameters") or {}
        table.rows.append(
            {
                "corpus": corpus,
                "model": model,
                "mode": mode,
                "training": cell.training,
                "r": dig(lora, "r"),
                "alpha": dig(lora, "alpha"),
                "dropout": dig(lora, "dropout"),
                "target_modules": dig(lora, "target_modules"),
                "trainable": parameters.get("trainable"),
                "total": parameters.get("total"),
                "trainable_pct": parameters.get("trainable_pct"),
            }
        )
    if any(row["trainable"] is None for row in table.rows):
        table.notes.append("'-' in the parameter columns: the cell's metrics.json has no 'parameters'")
    table.notes.append("parameters include the token-classification head, whose size depends on the corpus labels")
    return table


def set_table(groups, split: str) -> Table:
    """Table 5: set-based P/R/F1 (per-sentence sets of surface text and type), beside strict F1."""
    table = Table(
        "set",
        f"Set-based P/R/F1 on {split}: per-sentence sets of (text, type), as generative NER is scored (Table 5)",
        [*IDENTITY_COLUMNS, ("precision", "set P", "stat"), ("recall", "set R", "stat"), ("f1", "set F1", "stat"),
         ("strict_f1", "strict F1", "stat")],
    )  # fmt: skip
    for cells in groups.values():
        row = _identity(cells[0])
        for key in ("precision", "recall", "f1"):
            row[key] = stat(dig(c.metrics, split, "set", key) for c in cells)
        row["strict_f1"] = stat(dig(c.metrics, split, "micro", "f1") for c in cells)
        table.rows.append(row)
    table.notes += _missing_split_note(groups, split) + _no_spans_note(groups) + _schedule_note(groups)
    return table


def time_table(groups, split: str) -> Table:
    """Table 6: seconds per training epoch, and the ratio to the smallest encoder of the same corpus."""
    del split
    table = Table(
        "time",
        "Training time per epoch and ratio to the smallest encoder (paper Table 6)",
        [*IDENTITY_COLUMNS, ("kind", "kind", "text"), ("epochs", "epochs run", "stat1"),
         ("seconds_per_epoch", "s/epoch", "seconds"), ("ratio", "ratio to smallest encoder", "ratio")],
    )  # fmt: skip
    references = _smallest_encoders(groups)
    for (corpus, *_), cells in groups.items():
        row = _identity(cells[0])
        row["epochs"] = stat(c.metrics.get("epochs_run") for c in cells)
        row["seconds_per_epoch"] = stat(c.metrics.get("mean_epoch_seconds") for c in cells)
        reference = references.get(corpus)
        row["ratio"] = _ratio_to_encoder(row["seconds_per_epoch"], reference)
        row["ratio_reference"] = reference[0] if reference else None
        table.rows.append(row)
    for corpus in dict.fromkeys(key[0] for key in groups):
        if corpus in references:
            table.notes.append(f"{corpus}: ratio to {references[corpus][0]} ({references[corpus][1]:.1f} s/epoch)")
        else:
            table.notes.append(f"{corpus}: no encoder cell with a measured epoch time, so no ratio ('-')")
    if any(c.kind == "peer" for cells in groups.values() for c in cells):
        table.notes.append("peers (spaCy): seconds per pass over the training words, including spaCy's dev evaluations")
    table.notes.append("times are wall-clock on the machine in each metrics.json (shared CPU: expect noise)")
    table.notes += _machine_note(groups)
    return table


def _ratio_to_encoder(seconds: dict[str, Any] | None, encoder: tuple[str, float] | None) -> float | None:
    """Mean seconds per epoch over the reference encoder's (label, seconds); None when either is missing."""
    return seconds["mean"] / encoder[1] if seconds and encoder and encoder[1] else None


def _smallest_encoders(groups) -> dict[str, tuple[str, float]]:
    """Per corpus: (label, mean s/epoch) of the encoder with the fewest parameters that has a time."""
    best: dict[str, tuple[float, str, float]] = {}
    for (corpus, *_), cells in groups.items():
        first = cells[0]
        seconds = stat(c.metrics.get("mean_epoch_seconds") for c in cells)
        if first.kind != "encoder" or seconds is None:
            continue
        size = dig(first.metrics, "parameters", "total") or float("inf")
        if corpus not in best or size < best[corpus][0]:
            best[corpus] = (size, system_label(first), seconds["mean"])
    return {corpus: (label, seconds) for corpus, (_, label, seconds) in best.items()}


def inference_table(groups, split: str) -> Table:
    """Table 7: milliseconds per sentence, batched (throughput, ± over seeds) and one at a time (latency, ±
    over sentences)."""
    table = Table(
        "inference",
        f"Inference time per sentence on {split}, ms (paper Table 7)",
        [*IDENTITY_COLUMNS, ("ms_per_sentence", "ms/sentence (batched)", "stat2"), ("sentences", "sentences", "int"),
         ("latency", "ms/sentence (one at a time)", "stat1"), ("latency_n", "timed", "int")],
    )  # fmt: skip
    for cells in groups.values():
        row = _identity(cells[0])
        row["ms_per_sentence"] = stat(dig(c.metrics, split, "ms_per_sentence") for c in cells)
        row["sentences"] = dig(cells[0].metrics, split, "n_sentences")
        row["latency"], row["latency_n"] = _latency(cells, split)
        table.rows.append(row)
    table.notes += _missing_split_note(groups, split)
    table.notes.append("batched: prediction of the whole split divided by its sentences; ± is the std over seeds")
    table.notes.append(
        "one at a time: the first sentences of the split tagged in batches of one after 3 warm-up calls; ± is the "
        "std over those sentences (mean over seeds); '-' for cells run before it was measured or with document "
        "context"
    )
    table.notes += _machine_note(groups)
    return table


def _latency(cells: list[CellResult], split: str) -> tuple[dict[str, Any] | None, int | None]:
    """Mean and per-sentence std of batch-of-one tagging, averaged over the seeds that measured it."""
    measured = [latency for c in cells if (latency := dig(c.metrics, split, "latency_ms"))]
    if not measured:
        return None, None
    mean = statistics.fmean(m["mean"] for m in measured)
    return {"mean": mean, "std": statistics.fmean(m["std"] for m in measured), "n": len(measured)}, measured[0]["n"]


def errors_table(groups, split: str) -> Table:
    """Tables 11-12: the error taxonomy per system (mean count over seeds, and % of all errors)."""
    table = Table(
        "errors",
        f"Error taxonomy on {split}: mean count (% of errors) per system (paper Tables 11-12)",
        [*IDENTITY_COLUMNS, ("exact_matches", "exact", "count"),
         *[(name, name.replace("_", " "), "count_pct") for name in ERROR_COLUMNS]],
    )  # fmt: skip
    for cells in groups.values():
        row = _identity(cells[0])
        row["exact_matches"] = stat(dig(c.metrics, split, "errors", "exact_matches") for c in cells)
        for name in ERROR_COLUMNS:
            row[name] = stat(dig(c.metrics, split, "errors", name) for c in cells)
            row[name + "_pct"] = stat(dig(c.metrics, split, "errors_pct", name) for c in cells)
        table.rows.append(row)
    table.notes += _missing_split_note(groups, split) + _no_spans_note(groups)
    return table


def by_length_table(groups, split: str) -> Table:
    """Strict F1 by gold entity length in words (1, 2, 3+), the paper's biomedical study."""
    table = Table(
        "by_length",
        f"Strict F1 by entity length on {split} (words: 1 / 2 / 3+)",
        [*IDENTITY_COLUMNS, *[(f"f1_{b}", f"F1 {b}", "stat") for b in LENGTH_BUCKETS],
         *[(f"support_{b}", f"gold {b}", "int") for b in LENGTH_BUCKETS]],
    )  # fmt: skip
    for cells in groups.values():
        row = _identity(cells[0])
        for bucket in LENGTH_BUCKETS:
            row[f"f1_{bucket}"] = stat(dig(c.metrics, split, "by_length", bucket, "f1") for c in cells)
            row[f"support_{bucket}"] = dig(cells[0].metrics, split, "by_length", bucket, "support")
        table.rows.append(row)
    table.notes += _missing_split_note(groups, split) + _no_spans_note(groups)
    return table


def layer_patterns_table(groups, split: str) -> Table | None:
    """Layer-group patterns (``groups=G:BITS``) ranked by dev F1 per corpus, model and mode: pick on dev."""
    selected = {key: cells for key, cells in groups.items() if key[3].startswith("groups=")}
    if not selected:
        return None
    columns = [("corpus", "corpus", "text"), ("model", "model", "text"), ("mode", "mode", "text"),
               ("rank", "rank", "int"), ("attention_setting", "pattern", "text"),
               ("dev_f1", "dev F1", "stat")]  # fmt: skip
    if split != "dev":
        columns.append(("test_f1", f"{split} F1", "stat"))
    title = "Layer-group patterns ranked by dev F1 (1 = bidirectional group, first group = lowest layers)"
    table = Table("layer_patterns", title, columns)
    ranked: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for (corpus, model, mode, attention), cells in selected.items():
        ranked.setdefault((corpus, model, mode), []).append(
            {
                "corpus": corpus,
                "model": model,
                "mode": mode,
                "attention_setting": attention,
                "dev_f1": stat(dig(c.metrics, "dev", "micro", "f1") for c in cells),
                "test_f1": stat(dig(c.metrics, split, "micro", "f1") for c in cells) if split != "dev" else None,
            }
        )
    for rows in ranked.values():
        rows.sort(key=lambda r: -(r["dev_f1"]["mean"] if r["dev_f1"] else float("-inf")))
        for rank, row in enumerate(rows, 1):
            table.rows.append(row | {"rank": rank})
    table.notes.append("all-zero pattern = LS-CA (causal everywhere), all-one pattern = LS-FA; choose on dev only")
    return table


def paper_table(groups, split: str) -> Table | None:
    """Each number the paper published (Tables 2-7), followed by every lsfa cell in the same role.

    Roles, not models, pair the rows: the CPU grid runs smaller models than the paper, so a reader sees the
    paper's Qwen2.5-0.5B LS-FA beside each lsfa decoder with LS-FA and LoRA. A role without a finished lsfa
    cell gets a row saying so rather than no row. Only on test (what the paper reports) and only for the
    paper's corpora.
    """
    corpora = [corpus for corpus in dict.fromkeys(key[0] for key in groups) if corpus in paper.PAPER_CORPORA]
    if split != "test" or not corpora:
        return None
    table = Table(
        "paper",
        "lsfa beside the paper: each published number, then the lsfa cells in the same role (test)",
        [("role", "role", "text"), ("measure_name", "measure", "text"), ("source", "source", "text"),
         ("system", "system", "text"), *[(corpus, corpus, "measure") for corpus in corpora]],
    )  # fmt: skip
    encoders = _smallest_encoders(groups)
    for role in paper.ROLES:
        base = {"role": role.name, "measure": role.measure, "measure_name": paper.MEASURE_NAMES[role.measure]}
        for number in (n for n in paper.PAPER_NUMBERS if n.role == role.name):
            table.rows.append(base | {"source": "paper", "system": number.system}
                              | {corpus: number.values.get(corpus) for corpus in corpora})  # fmt: skip
        ours = _role_rows(groups, role, corpora, split, encoders)
        table.rows += [base | {"source": "lsfa"} | row for row in ours] or [
            base | {"source": "lsfa", "system": "(no finished cell yet)"}
        ]
    table.notes += list(paper.PAPER_NOTES) + _schedule_note(groups) + _machine_note(groups)
    return table


def _role_rows(groups, role: paper.Role, corpora: list[str], split: str, encoders) -> list[dict[str, Any]]:
    """One row per lsfa system in ``role``, its measure per corpus (mean ± std over seeds)."""
    rows: dict[str, dict[str, Any]] = {}
    for (corpus, *_), cells in groups.items():
        first = cells[0]
        if corpus not in corpora or not role.matches(first.kind, first.training, first.attention, first.system):
            continue
        row = rows.setdefault(system_label(first), {"system": system_label(first)})
        row[corpus] = _role_measure(role.measure, cells, split, encoders.get(corpus))
    return list(rows.values())


def _role_measure(measure: str, cells: list[CellResult], split: str, encoder) -> dict[str, Any] | None:
    if measure == "strict_f1":
        return stat(dig(c.metrics, split, "micro", "f1") for c in cells)
    if measure == "set_f1":
        return stat(dig(c.metrics, split, "set", "f1") for c in cells)
    if measure == "ms_per_sentence":
        return stat(dig(c.metrics, split, "ms_per_sentence") for c in cells)
    seconds = stat(c.metrics.get("mean_epoch_seconds") for c in cells)
    ratio = _ratio_to_encoder(seconds, encoder)
    return None if ratio is None else {"mean": ratio, "std": None, "n": seconds["n"]}


# --- rendering -------------------------------------------------------------------------------------------
def format_value(row: dict[str, Any], key: str, kind: str) -> str:
    """One Markdown cell; ``None`` is '-'."""
    value = row.get(key)
    if kind == "count_pct":
        count = format_value(row, key, "count")
        share = row.get(key + "_pct")
        return count if share is None or count == "-" else f"{count} ({share['mean']:.1f}%)"
    if value is None:
        return "-"
    if kind == "measure":  # the paper table: published numbers as printed, ours as mean ± std
        return _measure_text(value, str(row.get("measure")))
    if kind == "seconds":  # whole seconds for real runs, decimals for short ones
        kind = "stat0" if value["mean"] >= 100 else "stat1" if value["mean"] >= 10 else "stat2"
    if kind.startswith("stat") or kind == "count":
        digits = {"stat": 4, "stat0": 0, "stat1": 1, "stat2": 2, "count": 0}.get(kind, 4)
        text = f"{value['mean']:.{digits}f}"
        return text if value["std"] is None else f"{text} ± {value['std']:.{digits}f}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{value:.2f}%"
    if kind == "ratio":
        return f"{value:.2f}×"
    if kind == "points":
        return f"{value:+.1f}"
    return f"`{value}`" if key == "attention_setting" else str(value)


def _measure_text(value: float | dict[str, Any], measure: str) -> str:
    """A paper-table value: a published number with its own digits, a stat with the measure's digits."""
    suffix = "×" if measure == "time_ratio" else ""
    if not isinstance(value, dict):  # the paper prints F1 with 3 decimals, ratios and milliseconds with 1
        return f"{value:.{3 if measure.endswith('f1') else 1}f}{suffix}"
    kind = {"time_ratio": "stat2", "ms_per_sentence": "stat1"}.get(measure, "stat")
    return format_value({"value": value}, "value", kind) + suffix


def table_markdown(table: Table) -> str:
    """A table as Markdown, with its notes under it."""
    lines = [f"### {table.title}", ""]
    if not table.rows:
        lines.append("_no cells_")
    else:
        lines.append("| " + " | ".join(header for _, header, _ in table.columns) + " |")
        lines.append("|" + "---|" * len(table.columns))
        for row in table.rows:
            lines.append("| " + " | ".join(format_value(row, key, kind) for key, _, kind in table.columns) + " |")
    lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def load_failures(grid_dir: Path) -> list[dict[str, Any]]:
    """Failed cells recorded by the grid runner (still unfinished ones only)."""
    path = grid_dir / "failures.json"
    if not path.is_file():
        return []
    failures = json.loads(path.read_text()).get("failures", [])
    return [f for f in failures if not RunFolder(grid_dir / str(f.get("cell"))).finished]


def grid_order(grid_dir: Path) -> dict[str, list[str]]:
    """The order of corpora, models and modes in ``grid.yaml`` (empty when there is none)."""
    path = grid_dir / "grid.yaml"
    if not path.is_file():
        return {}
    import yaml

    grid = yaml.safe_load(path.read_text()) or {}
    axes = ("corpora", "models", "modes")
    order = {axis: [str(e["name"]) for e in grid.get(axis) or [] if isinstance(e, dict)] for axis in axes}
    order["models"] += [str(e["name"]) for e in grid.get("systems") or [] if isinstance(e, dict)]
    return order


def grid_summary(grid_dir: Path) -> list[str]:
    """The schedule the grid ran with (from ``grid.yaml``), for the report header."""
    path = grid_dir / "grid.yaml"
    if not path.is_file():
        return []
    import yaml

    grid = yaml.safe_load(path.read_text()) or {}
    base = grid.get("base") or {}
    keys = ("epochs", "max_steps", "early_stopping_patience", "learning_rate", "batch_size", "train_limit",
            "dev_limit", "test_limit", "precision", "max_length")  # fmt: skip
    schedule = ", ".join(f"{key} {base[key]}" for key in keys if key in base)
    lines = [f"Grid `{grid.get('name')}` from `{grid.get('source_file')}`."]
    if grid.get("description"):
        lines.append(str(grid["description"]).strip())
    if schedule:
        lines.append(f"Base schedule: {schedule}.")
    return lines


def write_report(
    grid_dirs: str | Path | Sequence[str | Path],
    out_dir: str | Path | None = None,
    split: str = "test",
    only: str | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and the PNG plots; returns their paths.

    With several grid folders (see :func:`collect_cells`) the first one gives the schedule in the header, the
    row order and the default output folder; the others are named in the header.
    """
    from lsfa.experiments import plots  # cycle: plots imports this module

    roots = _roots(grid_dirs)
    grid_dir = roots[0]
    out = Path(out_dir) if out_dir is not None else grid_dir / "report"
    cells = collect_cells(roots, only)
    if not cells:
        where = f" matching {only!r}" if only else ""
        raise LsfaError(f"{', '.join(map(str, roots))}: no finished cells{where} (no metrics.json below)")
    tables = build_tables(cells, split, grid_order(grid_dir))
    failures = [f for root in roots for f in load_failures(root)]
    out.mkdir(parents=True, exist_ok=True)
    pngs = plots.write_plots(tables, out)
    header = [f"# Experiment report: {' + '.join(map(str, roots))}", "", *grid_summary(grid_dir), ""]
    if len(roots) > 1 or only:
        selection = f"; cells matching `{only}`" if only else ""
        header.append(f"Cells from {', '.join(f'`{root}`' for root in roots)}{selection}.\n")
    header.append(f"{len(cells)} finished cells; scores on the {split} split; mean ± sample std over seeds.")
    body = [table_markdown(table) for table in tables.values()]
    if failures:
        body.append("### Failed cells\n\n" + "\n".join(f"- `{f['cell']}`: {f['error']}" for f in failures) + "\n")
    body.append("### Plots\n\n" + "\n".join(f"![{path.stem}]({path.name})" for path in pngs.values()) + "\n")
    paths = {"markdown": out / "report.md", "json": out / "report.json", **pngs}
    paths["markdown"].write_text("\n".join(header) + "\n\n" + "\n".join(body))
    report = {
        "grid": str(grid_dir),
        "grids": [str(root) for root in roots],
        "only": only,
        "split": split,
        "cells": [{**_identity(c), "seed": c.seed, "folder": str(c.folder)} for c in cells],
        "tables": {name: table.to_json() for name, table in tables.items()},
        "failures": failures,
        "plots": {name: path.name for name, path in pngs.items()},
    }
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    return paths
