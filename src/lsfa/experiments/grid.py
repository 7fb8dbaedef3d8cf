"""``lsfa experiment run``: a grid of ordinary training runs, resumable and tolerant of failing cells.

A grid YAML is a base training config (the same keys as ``lsfa train`` configs) plus axes::

    models: [smollm2-135m, {name: minilm-l6, modes: [full], learning_rate: 5.0e-5}]
    attention: [causal, full]            # or layer patterns: groups=4:1010, or layer-groups:4 for all 16
    modes:
      - {name: lora-r32, mode: lora, lora: {r: 32, alpha: 64}}
      - {name: full, mode: full, learning_rate: 5.0e-5}
    corpora: [conll2003, bc5cdr]
    seeds: [42]
    systems: [spacy, {name: ift, model: smollm2-135m}]  # peers/baselines (lsfa.experiments.systems), per corpus+seed
    output_dir: runs/experiments/NAME     # the grid folder

Every cell is one :func:`lsfa.training.runner.train` run in ``<grid>/<corpus>/<model>/<mode>/<attention>/seed<k>/``
next to a ``cell.json`` naming its axes (the report reads it). A cell whose ``metrics.json`` exists is
skipped, so re-running the same command resumes an interrupted grid; a cell that fails is recorded in
``<grid>/failures.json`` with its error and the grid goes on with the next cell, because one bad model
path or an out-of-memory cell should not cost a night of other runs.

Several ``lsfa experiment run`` processes may work on the same grid at once (two chains on a 2-core CPU,
or one per GPU or machine on a shared folder): a process claims a cell by creating ``<cell>/running.lock``
(exclusively, :func:`lsfa.runs.claim_folder`: the same lock ``lsfa train`` takes on its output folder) and the
others pass over it. A lock whose process is gone (same host, dead pid) is stale and taken over, so a killed
run does not block its cell forever.

Extra keys in a model, mode or corpus entry are training-config overrides for that entry (encoders usually want
a smaller learning rate than LoRA). Catalogue encoders get only ``attention: full`` unless their entry
says otherwise: they are bidirectional by design, so a causal cell would silently train the same model.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lsfa.errors import LsfaError
from lsfa.experiments.systems import TAGGER, peer_names, system_named
from lsfa.models.catalogue import CATALOGUE
from lsfa.runs import LOCK_FILE as LOCK_FILE  # the cell lock, by its name here too
from lsfa.runs import RunFolder, RunMetrics, claim_folder, lock_holder, release_folder, write_json_atomic
from lsfa.training.config import TrainConfig, canonical_keys, deep_merge, load_config
from lsfa.training.time_limit import TimeLimitReached, deadline_after
from lsfa.yaml_files import read_yaml_mapping

CELL_FILE = "cell.json"
FAILURES_FILE = "failures.json"
GRID_FILE = "grid.yaml"
GRID_KEYS = ("models", "attention", "modes", "corpora", "seeds", "systems", "output_dir", "name", "description")
LAYER_GROUPS_PREFIX = "layer-groups:"


def layer_group_patterns(groups: int = 4, named_ends: bool = False) -> list[str]:
    """All ``2**groups`` layer patterns ``groups=G:BITS`` (Dukić & Šnajder), from all-causal to all-full.

    ``groups=4:0000`` is the same model as ``causal`` and ``groups=4:1111`` the same as ``full``;
    ``named_ends=True`` writes those two by their names so they can share cells with a causal/full grid.
    """
    if not 1 <= groups <= 8:
        raise LsfaError(f"layer groups: expected 1 to 8 groups, got {groups}")
    patterns = []
    for bits in itertools.product("01", repeat=groups):
        pattern = "".join(bits)
        if named_ends and pattern == "0" * groups:
            patterns.append("causal")
        elif named_ends and pattern == "1" * groups:
            patterns.append("full")
        else:
            patterns.append(f"groups={groups}:{pattern}")
    return patterns


def safe_name(text: str) -> str:
    """A folder name for an axis value (``groups=4:1010`` -> ``groups4-1010``, as ``lsfa compare`` names it)."""
    text = text.replace("=", "").replace(":", "-").replace(",", "_")
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "_"


class _Entry(BaseModel):
    """An axis value with a display name; extra keys are training-config overrides."""

    model_config = ConfigDict(extra="allow")
    name: str
    path: str | None = None

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def target(self) -> str:
        """What the training config receives (a catalogue name, or a path)."""
        return self.path or self.name


class ModelEntry(_Entry):
    """A model of the grid, optionally limited to some modes and attention settings."""

    modes: list[str] | None = None
    attention: list[str] | None = None


class ModeEntry(_Entry):
    """A training mode: LoRA (with its hyper-parameters) or full fine-tuning."""

    mode: Literal["lora", "full"]


class SystemEntry(_Entry):
    """A peer or baseline system (``spacy``); extra keys are its options."""


class GridSpec(BaseModel):
    """A parsed grid file: the base config and the axes."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    source: str = "<grid>"
    name: str
    description: str = ""
    base: dict[str, Any]
    models: list[ModelEntry]
    attention: list[str]
    modes: list[ModeEntry]
    corpora: list[_Entry]
    seeds: list[int]
    systems: list[SystemEntry] = Field(default_factory=list)
    output_dir: str


@dataclass(eq=False)
class Cell:
    """One run of the grid: where it goes and the config it trains with."""

    corpus: str
    model: str
    mode: str
    attention: str
    seed: int
    config: TrainConfig
    system: str = TAGGER
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``corpus/model/mode/attention/seedK`` with filesystem-safe parts (its folder under the grid)."""
        parts = (self.corpus, self.model, self.mode, self.attention)
        return "/".join(safe_name(part) for part in parts) + f"/seed{self.seed}"

    def folder(self, grid_dir: str | Path) -> Path:
        return Path(grid_dir) / self.key

    def describe(self) -> dict[str, Any]:
        """What ``cell.json`` records: the axes, so the report does not have to guess them from paths."""
        return {
            "corpus": self.corpus,
            "model": self.model,
            "model_path": self.config.model,
            "mode": self.mode,
            "training": self.config.finetune if self.system == TAGGER else self.system,
            "attention": self.attention,
            "seed": self.seed,
            "system": self.system,
            "options": self.options,
        }


@dataclass
class GridOutcome:
    """What one ``run_grid`` call did with each cell (keys)."""

    cells: list[Cell]
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    paused: str | None = None  # the cell stopped at the time limit (a checkpoint saved; the next run resumes it)
    not_started: list[str] = field(default_factory=list)  # cells left because the time limit had passed


# --- reading a grid file -----------------------------------------------------------------------------
def load_grid(path: str | Path, output_dir: str | None = None) -> GridSpec:
    """Read and validate a grid YAML; every cell's config is checked before anything is trained."""
    path = Path(path)
    data = read_yaml_mapping(path, "grid file")
    spec = parse_grid(data, source=str(path), default_name=path.stem)
    if output_dir is not None:
        spec = spec.model_copy(update={"output_dir": output_dir})
    expand_cells(spec)  # validates every cell's training config now, not hours into the grid
    return spec


def parse_grid(data: dict[str, Any], source: str = "<grid>", default_name: str = "grid") -> GridSpec:
    """A grid from its YAML mapping: keys that are not axes form the base training config."""
    data = dict(data)
    axes = {key: data.pop(key) for key in GRID_KEYS if key in data}
    _reject_single_axis_keys(data, axes, source)
    try:
        base_config = load_config(None, data)
    except LsfaError as error:
        raise LsfaError(f"{source}: base config: {error}") from error
    name = str(axes.get("name") or default_name)
    raw = {
        "source": source,
        "name": name,
        "description": axes.get("description") or "",
        "base": data,
        "models": [_as_entry(m) for m in _as_list(axes.get("models", base_config.model))],
        "attention": _expand_attention(_as_list(axes.get("attention", base_config.attention))),
        "modes": _as_list(axes.get("modes")) or [{"name": base_config.finetune, "mode": base_config.finetune}],
        "corpora": [_as_entry(c) for c in _as_list(axes.get("corpora", base_config.corpus))],
        "seeds": _as_list(axes.get("seeds", base_config.seed)),
        "systems": [_as_entry(s) for s in _as_list(axes.get("systems"))],
        "output_dir": str(axes.get("output_dir") or f"runs/experiments/{safe_name(name)}"),
    }
    try:
        spec = GridSpec.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise LsfaError(f"{source}: invalid grid: {problems}") from error
    _check_names(spec)
    return spec


def _reject_single_axis_keys(base: dict[str, Any], axes: dict[str, Any], source: str) -> None:
    """``model:`` next to ``models:`` would be silently ignored; say which one counts instead."""
    plural = {"model": "models", "corpus": "corpora", "seed": "seeds", "finetune": "modes", "mode": "modes"}
    for single, axis in plural.items():
        if single in base and axis in axes:
            raise LsfaError(
                f"{source}: both '{single}:' and '{axis}:' given; the axis '{axis}' decides, drop '{single}'"
            )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _as_entry(value: Any) -> dict[str, Any]:
    """``smollm2-135m`` or ``/some/path`` -> ``{name, path}``; mappings pass through."""
    if isinstance(value, dict):
        return value
    text = str(value)
    if "/" in text or text.startswith("."):
        return {"name": Path(text).name or text, "path": text}
    return {"name": text}


def _expand_attention(values: list[Any]) -> list[str]:
    """Attention axis values, with ``layer-groups:G`` standing for all ``2**G`` layer patterns."""
    expanded: list[str] = []
    for value in values:
        text = str(value).strip()
        if text.startswith(LAYER_GROUPS_PREFIX):
            count = text[len(LAYER_GROUPS_PREFIX) :]
            if not count.isdigit():
                raise LsfaError(f"attention {text!r}: expected {LAYER_GROUPS_PREFIX}G, e.g. {LAYER_GROUPS_PREFIX}4")
            expanded.extend(layer_group_patterns(int(count)))
        else:
            expanded.append(text)
    return expanded


def _check_names(spec: GridSpec) -> None:
    modes = {m.name for m in spec.modes}
    for model in spec.models:
        for wanted in model.modes or []:
            if wanted not in modes:
                raise LsfaError(
                    f"{spec.source}: model {model.name!r} asks for mode {wanted!r}; modes are {sorted(modes)}"
                )
    for system in spec.systems:
        if system.name not in peer_names():
            raise LsfaError(f"{spec.source}: unknown system {system.name!r}; known systems: {', '.join(peer_names())}")


# --- cells -------------------------------------------------------------------------------------------
def expand_cells(spec: GridSpec) -> list[Cell]:
    """Every cell of the grid in run order (corpus, model, mode, attention, seed), then the systems."""
    cells: list[Cell] = []
    for corpus in spec.corpora:
        for model in spec.models:
            for mode in _modes_for(spec, model):
                for attention in _attention_for(spec, model):
                    for seed in spec.seeds:
                        cells.append(_model_cell(spec, corpus, model, mode, attention, seed))
        for system in spec.systems:
            for seed in spec.seeds:
                cells.append(_system_cell(spec, corpus, system, seed))
    _check_unique_folders(spec, cells)
    return cells


def _modes_for(spec: GridSpec, model: ModelEntry) -> list[ModeEntry]:
    return [m for m in spec.modes if model.modes is None or m.name in model.modes]


def _attention_for(spec: GridSpec, model: ModelEntry) -> list[str]:
    if model.attention is not None:
        return _expand_attention(model.attention)
    if catalogue_kind(model.target) == "encoder":
        return ["full"]
    return spec.attention


def catalogue_kind(name: str) -> str | None:
    """``decoder``/``encoder`` for catalogue names, None for paths and unknown names."""
    entry = CATALOGUE.get(name)
    return entry.kind if entry else None


def _cell_config(spec: GridSpec, overrides: list[dict[str, Any]], where: str) -> TrainConfig:
    merged: dict[str, Any] = {}
    try:
        for layer in [spec.base, *overrides]:
            merged = deep_merge(merged, canonical_keys(layer))  # a base config's mode: gives way to the modes axis
        return load_config(None, merged)
    except ValueError as error:
        raise LsfaError(f"{spec.source}: cell {where}: {error}") from None
    except LsfaError as error:
        raise LsfaError(f"{spec.source}: cell {where}: {error}") from error


def _model_cell(spec: GridSpec, corpus: _Entry, model: ModelEntry, mode: ModeEntry, attention: str, seed: int) -> Cell:
    where = f"{corpus.name}/{model.name}/{mode.name}/{attention}/seed{seed}"
    axes = {"model": model.target, "corpus": corpus.target, "attention": attention, "seed": seed, "finetune": mode.mode}
    cell = Cell(corpus.name, model.name, mode.name, attention, seed, TrainConfig())
    folder = cell.folder(spec.output_dir)
    layers = [corpus.overrides, mode.overrides, model.overrides, axes, {"output_dir": str(folder)}]
    cell.config = _cell_config(spec, layers, where)
    return cell


def _system_cell(spec: GridSpec, corpus: _Entry, system: SystemEntry, seed: int) -> Cell:
    mode_label = system_named(system.name).mode_label
    cell = Cell(corpus.name, system.name, mode_label, "none", seed, TrainConfig(), system.name, system.overrides)
    layers = [
        corpus.overrides,
        {"corpus": corpus.target, "seed": seed, "output_dir": str(cell.folder(spec.output_dir))},
    ]
    cell.config = _cell_config(spec, layers, f"{corpus.name}/{system.name}/seed{seed}")
    return cell


def _check_unique_folders(spec: GridSpec, cells: list[Cell]) -> None:
    """Two axis values with the same folder name would make one cell look finished: refuse the grid."""
    seen: dict[str, Cell] = {}
    for cell in cells:
        other = seen.get(cell.key)
        if other is not None:
            raise LsfaError(
                f"{spec.source}: two cells share the folder {cell.key!r} ({other.config.model} and "
                f"{cell.config.model}); give the models or corpora distinct 'name:' values"
            )
        seen[cell.key] = cell


def key_matches(key: str, only: str | None) -> bool:
    """Whether a cell key (its folder below the grid, e.g. ``conll2003/smollm2-135m/lora/full/seed42``) matches
    ``only``: a glob when it has ``*?[``, else a substring; everything matches None."""
    if not only:
        return True
    from fnmatch import fnmatch

    return fnmatch(key, only if any(ch in only for ch in "*?[") else f"*{only}*")


def select_cells(cells: list[Cell], only: str | None) -> list[Cell]:
    """Cells whose key matches the glob ``only`` (e.g. ``conll2003/*/lora*/*``), all cells when None."""
    return [cell for cell in cells if key_matches(cell.key, only)]


# --- running -----------------------------------------------------------------------------------------
def run_grid(
    spec: GridSpec,
    dry_run: bool = False,
    only: str | None = None,
    log: Callable[[str], None] = print,
    time_limit: float | None = None,
) -> GridOutcome:
    """Train every unfinished cell; skip finished ones; record failures and go on.

    ``time_limit`` (seconds) bounds this call: the cell training when it runs out stops at a saved checkpoint
    (``outcome.paused``), and no further cell starts (``outcome.not_started``); running again resumes.
    """
    deadline = deadline_after(time_limit)
    cells = select_cells(expand_cells(spec), only)
    outcome = GridOutcome(cells)
    grid_dir = Path(spec.output_dir)
    if not dry_run:
        grid_dir.mkdir(parents=True, exist_ok=True)
        _write_grid_file(spec, grid_dir)
    for index, cell in enumerate(cells, 1):
        folder = cell.folder(grid_dir)
        prefix = f"[{index}/{len(cells)}] {cell.key}"
        if RunFolder(folder).finished:
            outcome.skipped.append(cell.key)
            drift = config_drift(folder, cell)
            note = (
                f" (note: it was trained with other {', '.join(drift)}; delete the folder to retrain)" if drift else ""
            )
            log(f"{prefix}: finished, skipped{note}")
            continue
        if dry_run:
            log(f"{prefix}: {unfinished_state(folder)} ({describe_config(cell)})")
            continue
        if deadline is not None and (outcome.paused or time.time() >= deadline):
            outcome.not_started.append(cell.key)
            continue
        holder = claim_cell(folder)
        if holder is not None:
            outcome.busy.append(cell.key)
            log(f"{prefix}: being trained by another process ({holder}), passed over")
            continue
        log(f"{prefix}: training")
        try:
            failure = _run_one(cell, folder, log, deadline)
        except TimeLimitReached as stop:
            outcome.paused = cell.key
            log(f"{prefix}: {stop}")
            continue
        finally:
            release_cell(folder)
        if failure is None:
            outcome.trained.append(cell.key)
        else:
            outcome.failed.append(failure)
            log(f"{prefix}: FAILED ({failure['error_type']}: {failure['error']}); going on")
        _update_failures(grid_dir, cells, outcome)
    if outcome.not_started:
        log(f"time limit reached: {len(outcome.not_started)} cells not started; run the same command to go on")
    if not dry_run:
        _update_failures(grid_dir, cells, outcome)
    return outcome


def unfinished_state(folder: Path) -> str:
    """What a dry run says of an unfinished cell: whether a live process holds it, and where it would resume."""
    from lsfa.training.checkpoints import resume_point  # lazy: transformers, for a dry run's unfinished cells only

    point = resume_point(folder)
    saved = f"step {point['step']} of {point['max_steps']} saved (epoch {point['epoch']:.2f})" if point else ""
    owner = lock_holder(folder)
    if owner:
        return f"being trained by {owner}" + (f", {saved}" if saved else "")
    return f"to resume, {saved}" if saved else "to run"


claim_cell = claim_folder
"""Claim a cell for this process: None when claimed, else the ``host:pid`` of the process holding it
(:func:`lsfa.runs.claim_folder`, the lock ``lsfa train`` takes too)."""
release_cell = release_folder


def config_drift(folder: Path, cell: Cell) -> list[str]:
    """Config keys of a finished cell that differ from what the grid asks now (a skip should not hide that)."""
    try:
        finished = canonical_keys(RunMetrics.read(folder).config)  # an older record's mode: is finetune:
    except (OSError, json.JSONDecodeError, AttributeError, ValueError):
        return []
    wanted = cell.config.model_dump()
    return sorted(k for k in wanted if k != "output_dir" and k in finished and finished[k] != wanted[k])


def describe_config(cell: Cell) -> str:
    """A short line of what a cell will train, for ``--dry-run``."""
    config = cell.config
    if cell.system != TAGGER:
        # Systems keep their own schedules (spaCy's steps) or take the grid's through their options, so only
        # the options are shown, not the base config's epochs.
        options = ", ".join(f"{key} {value}" for key, value in cell.options.items() if not isinstance(value, dict))
        return f"system {cell.system}, corpus {config.corpus}, seed {config.seed}" + (f", {options}" if options else "")
    lora = f" r={config.lora.r}" if config.finetune == "lora" else ""
    return (
        f"model {config.model}, {config.finetune}{lora}, attention {config.attention}, lr {config.learning_rate}, "
        f"epochs {config.epochs}, train_limit {config.train_limit or 'all'}"
        + (f", max_train_time {config.max_train_time:g}s" if config.max_train_time else "")
    )


def _run_one(
    cell: Cell, folder: Path, log: Callable[[str], None], deadline: float | None = None
) -> dict[str, Any] | None:
    """Train one cell; any exception becomes a failure record (Ctrl-C and the time limit still stop the grid)."""
    started = time.time()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CELL_FILE).write_text(json.dumps(cell.describe(), indent=2) + "\n")
        run_cell(cell, folder, log, deadline)
        if not RunFolder(folder).finished:
            raise LsfaError("the run ended without writing metrics.json")
    except TimeLimitReached:
        raise
    except Exception as error:
        return {
            "cell": cell.key,
            "folder": str(folder),
            "error_type": type(error).__name__,
            "error": str(error).strip().splitlines()[0] if str(error).strip() else repr(error),
            "traceback": traceback.format_exc(limit=-6).splitlines()[-12:],
            "seconds": time.time() - started,
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    return None


def run_cell(cell: Cell, folder: Path, log: Callable[[str], None], deadline: float | None = None) -> None:
    """One cell, trained by its system (:mod:`lsfa.experiments.systems`): the token tagger (resumed from its last
    checkpoint if it was cut short) or a peer."""
    system_named(cell.system).run(cell.config, cell.options, folder, log, deadline=deadline)


def _write_grid_file(spec: GridSpec, grid_dir: Path) -> None:
    """The grid as run (base config and axes), kept with the results for the report and for re-running."""
    data = spec.model_dump(exclude={"source"})
    data["source_file"] = spec.source
    (grid_dir / GRID_FILE).write_text(yaml.safe_dump(data, sort_keys=False))


def _update_failures(grid_dir: Path, cells: list[Cell], outcome: GridOutcome) -> None:
    """``failures.json``: this run's failures plus older ones of cells not retried and still unfinished."""
    path = grid_dir / FAILURES_FILE
    attempted = set(outcome.trained) | {f["cell"] for f in outcome.failed}
    keep = []
    if path.exists():
        try:
            previous = json.loads(path.read_text()).get("failures", [])
        except (OSError, json.JSONDecodeError, AttributeError):
            previous = []
        keep = [
            f for f in previous
            if f.get("cell") not in attempted and not RunFolder(grid_dir / str(f.get("cell"))).finished
        ]  # fmt: skip
    failures = keep + outcome.failed
    if failures or path.exists():
        write_json_atomic(path, {"failures": failures, "cells_in_grid": len(cells)})
