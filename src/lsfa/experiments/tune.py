"""``lsfa tune``: search LoRA configurations (and the attention setting) with Optuna, the paper's future work.

Each trial is an ordinary training run in ``DIR/trials/NNN/`` (selection on dev only: no test split), on a
budget that may be smaller than the final one (``budget:`` keys, e.g. a train slice and fewer epochs). The TPE
sampler proposes, the median pruner stops a trial whose dev F1 after an epoch is clearly behind, and the study
lives in ``DIR/study.db`` (SQLite), so an interrupted search resumes where it stopped and several processes can
share it (start each with ``--no-final``, then run the command once more for the final run). The best
configuration is then retrained at the base config's full budget and scored once on test
(``DIR/best/``), and ``DIR/report.md`` gives the trials table, the best configuration, Optuna's parameter
importances and an optimisation-history plot. When the base config is itself a point of the space, it is the
study's first trial, so the report shows where the default stands on the same trial budget.

A search space file maps config keys to ranges:

    lora.r: {choices: [8, 16, 32, 64]}
    lora.alpha_ratio: {choices: [1, 2]}          # alpha = ratio x r (or search lora.alpha itself)
    lora.dropout: {low: 0.0, high: 0.1}
    lora.target_modules: {choices: ["q_proj,k_proj,v_proj,o_proj", "all-linear"]}
    learning_rate: {low: 5.0e-5, high: 1.0e-3, log: true}
    epochs: {choices: [1, 2, 3]}
    attention: {choices: [full, "groups=4:0111"]}
    budget: {train_limit: 2000, dev_limit: 500}  # trial budget (config keys); the final run uses the base
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsfa.errors import LsfaError
from lsfa.runs import RunFolder, RunMetrics
from lsfa.training.config import TrainConfig, with_overrides
from lsfa.yaml_files import read_yaml_mapping

SEARCH_KEYS = ("lora.r", "lora.alpha", "lora.alpha_ratio", "lora.dropout", "lora.target_modules", "learning_rate",
               "epochs", "attention")  # fmt: skip
"""What a search space may vary; ``budget`` holds the trial budget instead."""
STUDY_FILE = "study.db"
PRUNE_AFTER_TRIALS = 3
"""Trials that always run to the end before the median pruner may stop others (it needs a median to compare)."""


def load_space(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The search ranges and the trial budget of a space file, checked: unknown keys, empty ranges and
    malformed entries are one clear error naming the file and the key."""
    data = read_yaml_mapping(path, "search space file")
    budget = data.pop("budget", None) or {}
    if not isinstance(budget, dict):
        raise LsfaError(f"{path}: budget must be a mapping of config keys (train_limit, epochs, ...)")
    if not data:
        raise LsfaError(f"{path}: no search keys; use some of {', '.join(SEARCH_KEYS)}")
    for key, spec in data.items():
        _check_range(path, key, spec)
    if "lora.alpha" in data and "lora.alpha_ratio" in data:
        raise LsfaError(f"{path}: search lora.alpha or lora.alpha_ratio, not both")
    return data, budget


def _check_range(path: str | Path, key: str, spec: Any) -> None:
    if key not in SEARCH_KEYS:
        raise LsfaError(f"{path}: unknown search key {key!r}; use {', '.join(SEARCH_KEYS)} (and budget)")
    if not isinstance(spec, dict) or not ({"choices"} <= set(spec) or {"low", "high"} <= set(spec)):
        raise LsfaError(f"{path}: {key} needs {{choices: [...]}} or {{low: ..., high: ...}}")
    if "choices" in spec and (not isinstance(spec["choices"], list) or not spec["choices"]):
        raise LsfaError(f"{path}: {key}: empty choices")
    if "low" in spec and not (isinstance(spec["low"], (int, float)) and isinstance(spec["high"], (int, float))):
        raise LsfaError(f"{path}: {key}: low and high must be numbers")
    if "low" in spec and spec["low"] > spec["high"]:
        raise LsfaError(f"{path}: {key}: empty range (low {spec['low']} > high {spec['high']})")


def sample(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One configuration from ``space`` as nested config overrides (``lora.r`` -> ``{"lora": {"r": ...}}``)."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        if "choices" in spec:
            values[key] = trial.suggest_categorical(key, spec["choices"])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log"):
            values[key] = trial.suggest_int(key, spec["low"], spec["high"])
        else:
            low, high = float(spec["low"]), float(spec["high"])
            values[key] = trial.suggest_float(key, low, high, log=bool(spec.get("log")))
    return overrides_of(values)


def base_values(base: TrainConfig, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The base config's own value of every search key, when the space contains it (for the base trial)."""
    values: dict[str, Any] = {}
    for key in space:
        head, _, tail = key.partition(".")
        if key == "lora.alpha_ratio":
            value: Any = base.lora.alpha / base.lora.r
            value = int(value) if float(value).is_integer() else value
        else:
            value = getattr(base.lora, tail) if head == "lora" else getattr(base, key)
        spec = space[key]
        inside = value in spec["choices"] if "choices" in spec else spec["low"] <= value <= spec["high"]
        if not inside:
            return {}  # the base configuration is not a point of this space
        values[key] = value
    return values


def overrides_of(values: dict[str, Any]) -> dict[str, Any]:
    """Flat sampled values as nested config overrides; ``lora.alpha_ratio`` becomes ``lora.alpha``."""
    overrides: dict[str, Any] = {}
    for key, value in values.items():
        if key == "lora.alpha_ratio":
            continue
        head, _, tail = key.partition(".")
        if tail:
            overrides.setdefault(head, {})[tail] = value
        else:
            overrides[key] = value
    if "lora.alpha_ratio" in values:
        rank = values.get("lora.r")
        overrides.setdefault("lora", {})["alpha"] = round(values["lora.alpha_ratio"] * (rank or 32))
    return overrides


def tune(
    base: TrainConfig,
    space_file: str | Path,
    out_dir: str | Path,
    trials: int,
    timeout_minutes: float | None = None,
    final: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the search, retrain the best configuration at full budget, write the report."""
    optuna = _optuna()
    if trials < 1:
        raise LsfaError(f"--trials must be at least 1, got {trials}")
    if timeout_minutes is not None and timeout_minutes <= 0:
        raise LsfaError(f"--timeout-minutes must be positive, got {timeout_minutes}")
    space, budget = load_space(space_file)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trial_base = with_overrides(base, {**budget, "test_split": None})
    study = optuna.create_study(
        study_name="lsfa-tune",
        storage=f"sqlite:///{out / STUDY_FILE}",
        load_if_exists=True,
        direction="maximize",
        pruner=make_pruner(optuna),
    )
    # Seeded by the trials already in the study, so that a resumed search or a second worker sharing the study
    # does not draw the same random start-up configurations as the first process did.
    study.sampler = optuna.samplers.TPESampler(seed=base.seed + len(study.trials))
    base_point = base_values(base, space)
    if base_point:  # the base configuration is scored on the trial budget too: where the default stands
        study.enqueue_trial(base_point, user_attrs={"base_config": True}, skip_if_exists=True)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    remaining = trials - len(study.get_trials(deepcopy=False, states=finished))
    if remaining > 0:
        objective = _objective(trial_base, space, out, log)
        timeout = None if timeout_minutes is None else timeout_minutes * 60
        # The study-wide cap stops every worker once `trials` have finished (each may overshoot by the one
        # trial it was running).
        cap = optuna.study.MaxTrialsCallback(trials, states=finished)
        study.optimize(objective, n_trials=remaining, timeout=timeout, catch=(LsfaError,), callbacks=[cap])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise LsfaError(f"no trial finished (timeout {timeout_minutes} minutes): enlarge it or shrink the trial budget")
    best = study.best_trial
    result: dict[str, Any] = {"best_trial": best.number, "best_dev_f1": best.value, "best_params": best.params}
    if final:
        result["final"] = _final_run(base, best.params, out, log)
    write_report(study, out, result)
    return result


def make_pruner(optuna):
    """Stop a trial whose dev F1 after an epoch is below the median of the earlier trials at that epoch."""
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=0)


def _objective(trial_base: TrainConfig, space, out: Path, log):
    from lsfa.training.runner import train  # lazy: torch and transformers, after the space file is checked

    optuna = _optuna()

    def objective(trial) -> float:
        overrides = sample(trial, space)
        folder = str(_trial_dir(out, trial.number))
        config = with_overrides(trial_base, {**overrides, "output_dir": folder})
        log(f"trial {trial.number}: {json.dumps(trial.params)}")
        metrics = train(config, resume=True, log=lambda _: None, extra_callbacks=[pruning_callback(trial, optuna)])
        trial.set_user_attr("parameters", metrics.get("parameters", {}))
        return float(metrics["dev"]["micro"]["f1"])

    return objective


def _trial_dir(out: Path, number: int) -> Path:
    return out / "trials" / f"{number:03d}"


def pruning_callback(trial, optuna):
    """A Trainer callback reporting dev F1 after each epoch to Optuna and stopping the trial when the pruner
    says it is clearly behind the others at that epoch."""
    from transformers import TrainerCallback

    class Pruning(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and "eval_f1" in metrics:
                step = round(state.epoch or 0)
                trial.report(float(metrics["eval_f1"]), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"dev F1 {metrics['eval_f1']:.4f} after epoch {step}")

    return Pruning()


def _final_run(base: TrainConfig, params: dict[str, Any], out: Path, log) -> dict[str, Any]:
    """The best configuration at the base config's full budget, scored once on test."""
    from lsfa.training.runner import train  # lazy: torch and transformers, after the space file is checked

    folder = RunFolder(out / "best")
    config = with_overrides(base, {**overrides_of(params), "output_dir": str(folder.path)})
    if not folder.finished:
        log(f"final: retraining the best configuration at full budget in {folder.path}")
        train(config, resume=True, log=log)
    metrics = RunMetrics.read(folder.path)
    return {"dev_f1": metrics.dev.micro.f1 if metrics.dev and metrics.dev.micro else None,
            "test_f1": metrics.test.micro.f1 if metrics.test and metrics.test.micro else None,
            "folder": str(folder.path)}  # fmt: skip


def _f1_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def write_report(study, out: Path, result: dict[str, Any]) -> Path:
    """``report.md`` (trials table, best configuration, importances), ``history.png`` and ``tune.json``."""
    optuna = _optuna()
    keys = sorted({k for t in study.trials for k in t.params})
    rows = ["| trial | state | " + " | ".join(keys) + " | trainable (% of model) | dev F1 | seconds |"]
    rows.append("|" + "---|" * (len(keys) + 5))
    for trial in study.trials:
        state = trial.state.name.lower() + (" (base config)" if trial.user_attrs.get("base_config") else "")
        rows.append("| " + " | ".join([str(trial.number), state, *_trial_cells(trial, keys)]) + " |")
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as error:  # fewer than two complete trials, or one value only
        importances = {"(not available)": str(error)}
    best = (
        f"Best trial {result['best_trial']}: dev F1 {result['best_dev_f1']:.4f}, `{json.dumps(result['best_params'])}`"
    )
    lines = ["# LoRA configuration search", "", best, ""]
    if "final" in result:
        final = result["final"]
        scores = ", ".join(f"{split} F1 {_f1_text(final[f'{split}_f1'])}" for split in ("dev", "test"))
        lines += [f"Retrained at full budget ({final['folder']}): {scores}"]
        lines.append("")
    lines += ["## Trials", "", *rows, "", "## Parameter importances (Optuna, fANOVA)", ""]
    lines += [f"- {name}: {value if isinstance(value, str) else f'{value:.3f}'}" for name, value in importances.items()]
    lines += ["", "![optimisation history](history.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    (out / "tune.json").write_text(json.dumps({**result, "importances": importances}, indent=2, default=str) + "\n")
    _history_plot(study, out / "history.png")
    return out / "report.md"


def _trial_cells(trial, keys: list[str]) -> list[str]:
    parameters = trial.user_attrs.get("parameters") or {}
    trainable = f"{parameters['trainable']:,} ({parameters['trainable_pct']:.2f}%)" if parameters else "-"
    seconds = trial.duration.total_seconds() if trial.duration else None  # Optuna's own start and end: pruned too
    value = _f1_text(trial.value)
    if trial.state.name == "PRUNED" and trial.intermediate_values:  # its last report, not a finished trial's F1
        epoch = max(trial.intermediate_values)
        value = f"({trial.intermediate_values[epoch]:.4f} after epoch {epoch})"
    cells = [_param_text(trial.params.get(k, "-")) for k in keys]
    return [*cells, trainable, value, f"{seconds:.0f}" if seconds else "-"]


def _param_text(value: Any) -> str:
    """A sampled value for the table: floats to 3 significant digits (a learning rate of 0.000732, not 17)."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _history_plot(study, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    done = [t for t in study.trials if t.value is not None and t.state.name == "COMPLETE"]
    pruned = [t for t in study.trials if t.value is not None and t.state.name == "PRUNED"]
    axes.plot([t.number for t in done], [t.value for t in done], "o", label="trial dev F1")
    if pruned:
        axes.plot([t.number for t in pruned], [t.value for t in pruned], "x", label="pruned (dev F1 when stopped)")
    best, running = [], float("-inf")
    for trial in done:
        running = max(running, trial.value)
        best.append(running)
    axes.plot([t.number for t in done], best, "-", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel("dev F1")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)


def _optuna():
    try:
        import optuna
    except ImportError as error:
        raise LsfaError("lsfa tune needs Optuna: pip install 'lsfa[tune]'") from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
