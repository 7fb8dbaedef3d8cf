"""What each catalogue model scored and how fast it tagged, from the committed full-data runs, for ``lsfa models``.

Why a packaged file: the numbers live in ``docs/results/cpu-paper/cells/<corpus>/<model>/<mode>/<attention>/
seed42/metrics.json``, which is not installed with the package. ``scripts/catalogue_results.py`` reads them
with :func:`build_results` and writes ``results.json`` beside this module; a test rebuilds it from the
committed cells and compares, so the table cannot drift from the results it quotes.

Which cell: for each model and corpus, the best test F1 among its LS-FA LoRA cells (decoders: mode ``lora``,
attention ``full``) and its full fine-tunes (encoders), trained and tested on the whole corpus. Speed is the
median time to tag one test sentence on its own (batch 1, ``latency_ms`` in the cell), with the CPU, thread
count and precision it was measured with (a later measurement, ``measured_later``, names its own machine).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

CORPORA = {"conll2003": "CoNLL-2003", "bc5cdr": "BC5CDR"}
"""The corpora quoted, with the names the table shows."""
RESULTS_FILE = "results.json"
CELL_GLOB = "{corpus}/{model}/*/*/seed42/metrics.json"


def is_recommended_recipe(mode: str, attention: str) -> bool:
    """LS-FA with LoRA (the paper's recipe for decoders) or an encoder's full fine-tune."""
    return (mode, attention) in (("lora", "full"), ("full", "full"))


def cell_summary(metrics: dict[str, Any], cell: str) -> dict[str, Any] | None:
    """The quoted numbers of one cell's ``metrics.json``, or None when it is not a full-data run with a test F1."""
    config, test = metrics.get("config", {}), metrics.get("test") or {}
    if any(config.get(key) is not None for key in ("train_limit", "dev_limit", "test_limit")):
        return None
    f1 = (test.get("micro") or {}).get("f1")
    if f1 is None:
        return None
    latency = test.get("latency_ms") or {}
    machine = latency.get("measured_later") or metrics.get("machine") or {}
    return {
        "cell": cell,
        "test_f1": round(f1, 4),
        "test_sentences": test.get("n_sentences"),
        "precision": metrics.get("precision"),
        "ms_per_sentence": round(latency["median"], 1) if "median" in latency else None,
        "cpu": machine.get("cpu_model"),
        "threads": machine.get("torch_threads"),
    }


def best_cell(cells_dir: Path, corpus: str, model: str) -> dict[str, Any] | None:
    """The highest-F1 recommended-recipe cell of ``model`` on ``corpus`` under ``cells_dir`` (None if none)."""
    best: dict[str, Any] | None = None
    for path in sorted(cells_dir.glob(CELL_GLOB.format(corpus=corpus, model=model))):
        mode, attention = path.parts[-4], path.parts[-3]
        if not is_recommended_recipe(mode, attention):
            continue
        summary = cell_summary(json.loads(path.read_text()), path.parent.relative_to(cells_dir).as_posix())
        if summary and (best is None or summary["test_f1"] > best["test_f1"]):
            best = summary
    return best


def build_results(cells_dir: Path, models: list[str]) -> dict[str, Any]:
    """The packaged record: per model, per corpus, its best cell's numbers (a model without a cell is left out)."""
    table: dict[str, Any] = {}
    for model in models:
        found = {corpus: best_cell(cells_dir, corpus, model) for corpus in CORPORA}
        if any(found.values()):
            table[model] = {corpus: summary for corpus, summary in found.items() if summary}
    return {
        "source": "docs/results/cpu-paper/cells (seed 42, full data); rebuilt by scripts/catalogue_results.py",
        "models": table,
    }


def load_results() -> dict[str, Any]:
    """The packaged record (empty when the file is missing, e.g. in a trimmed install)."""
    try:
        text = resources.files("lsfa.models").joinpath(RESULTS_FILE).read_text()
    except (FileNotFoundError, OSError):
        return {"models": {}}
    return json.loads(text)


def highest_f1(record: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """Per corpus, the model with the highest quoted test F1 and that F1: where to start for quality."""
    best: dict[str, tuple[str, float]] = {}
    for model, corpora in record.get("models", {}).items():
        for corpus, summary in corpora.items():
            if corpus not in best or summary["test_f1"] > best[corpus][1]:
                best[corpus] = (model, summary["test_f1"])
    return best


def measured_on(summary: dict[str, Any]) -> str:
    """Where and how a speed was measured, e.g. ``Intel Xeon, 1 thread, fp32``."""
    threads = summary.get("threads")
    parts = [short_cpu_name(summary.get("cpu") or "CPU not recorded")]
    if threads:
        parts.append(f"{threads} thread" + ("s" if threads > 1 else ""))
    if summary.get("precision"):
        parts.append(summary["precision"])
    return ", ".join(parts)


def short_cpu_name(name: str) -> str:
    """A CPU model name without its trademark signs and filler words, to fit a table column."""
    for noise in ("(R)", "(TM)", " Processor", " CPU"):
        name = name.replace(noise, "")
    return " ".join(name.split())
