"""The spaCy peer: what a user would pick for CPU NER, trained and scored on exactly our splits.

spaCy is an optional dependency (``pip install 'lsfa[peers]'``) imported only here, lazily. The peer
converts our IOB2 sentences to spaCy ``DocBin`` files (the words as they are, so spaCy's tokenizer never
re-splits them), generates spaCy's own CPU NER config (``init config --pipeline ner --optimize
efficiency``: a hash-embedding CNN tok2vec with a transition-based NER), runs ``spacy train`` in a
subprocess on the train split with dev for spaCy's model selection, then tags dev and test with
``model-best`` over the same pre-tokenised words and scores them with
:func:`lsfa.eval.report.evaluate_sentences`. The run folder gets a ``metrics.json`` with the keys of an
lsfa run (``dev``, ``test``, timings, ``parameters``), so ``lsfa experiment report`` treats it like any
other cell.

Grid options (``systems: [{name: spacy, ...}]``): ``optimize`` (efficiency|accuracy), ``max_steps``
(0 = until ``epochs``), ``patience`` and ``eval_frequency`` (in steps, spaCy's defaults 1600 and 200),
``overrides`` (any ``section.key: value`` of spaCy's config). ``epochs`` of the grid's base config is
spaCy's ``max_epochs``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lsfa.data.conll import write_conll
from lsfa.data.corpora import load_split
from lsfa.data.docbin import doc_tags, require_spacy, sentences_to_docs, spacy_words, write_docbin  # noqa: F401
from lsfa.data.types import Sentence
from lsfa.errors import LsfaError
from lsfa.eval.report import evaluate_sentences
from lsfa.inference.latency import sentence_latency
from lsfa.runs import RunFolder, machine_info
from lsfa.training.config import TrainConfig
from lsfa.training.dataset import load_training_data

OPTIONS = ("optimize", "max_steps", "patience", "eval_frequency", "overrides", "batch_size")
SPACY_DIR = "spacy"


def predict_tags(nlp, sentences: Sequence[Sentence], batch_size: int = 256) -> list[list[str]]:
    """Tag pre-tokenised sentences with a trained pipeline (spaCy's tokenizer is not run)."""
    docs = sentences_to_docs(nlp.vocab, sentences, with_entities=False)
    return [doc_tags(doc) for doc in nlp.pipe(docs, batch_size=batch_size)]


def spacy_latency(nlp, sentences: Sequence[Sentence]) -> dict[str, Any] | None:
    """:func:`~lsfa.inference.latency.sentence_latency` of a trained pipeline, one sentence per ``nlp.pipe``."""
    return sentence_latency(lambda sentence: predict_tags(nlp, [sentence], 1), sentences)


def write_spacy_config(path: Path, progress_file: Path, optimize: str = "efficiency") -> None:
    """spaCy's own recommended CPU NER config, with lsfa's timing logger plugged in."""
    require_spacy()
    from spacy.cli.init_config import init_config

    if optimize not in ("efficiency", "accuracy"):
        raise LsfaError(f"spaCy peer: optimize must be 'efficiency' or 'accuracy', not {optimize!r}")
    config = init_config(lang="en", pipeline=["ner"], optimize=optimize, gpu=False)
    config["training"]["logger"] = {"@loggers": "lsfa.ProgressLogger.v1", "path": str(progress_file)}
    config.to_disk(path)


def check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise LsfaError(f"spaCy peer: unknown option(s) {', '.join(unknown)}; options are {', '.join(OPTIONS)}")


def train_command(config: TrainConfig, options: dict[str, Any], work: Path) -> list[str]:
    """The ``spacy train`` command line for a grid cell."""
    from lsfa.baselines import spacy_logger  # lazy: it imports spaCy, an optional extra

    settings = {
        "paths.train": str(work / "train.spacy"),
        "paths.dev": str(work / "dev.spacy"),
        "system.seed": config.seed,
        "training.max_epochs": max(1, math.ceil(config.epochs)),
        "training.max_steps": options.get("max_steps", max(config.max_steps, 0)),
    }
    for key in ("patience", "eval_frequency"):
        if key in options:
            settings[f"training.{key}"] = options[key]
    settings.update(options.get("overrides") or {})
    command = [sys.executable, "-m", "spacy", "train", str(work / "config.cfg"), "--output", str(work / "output")]
    command += ["--code", spacy_logger.__file__]
    for key, value in settings.items():
        command += [f"--{key}", str(value)]
    return command


def run_spacy_train(command: list[str], log_file: Path, threads: int | None) -> tuple[float, float]:
    """Run ``spacy train`` (console output to ``log_file``); returns its wall seconds and peak memory in MiB.

    ``os.wait4`` gives the resource usage of this one child, not of every child the process ever had.
    """
    env = dict(os.environ, ANSI_COLORS_DISABLED="1")
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    started = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-5:]
        raise LsfaError(f"spacy train failed (exit {process.returncode}), see {log_file}: {' | '.join(tail)}")
    return seconds, usage.ru_maxrss / 1024


def count_parameters(nlp) -> dict[str, int | float]:
    """Trainable and total weights of the pipeline's models (all trained from scratch: 100 %)."""
    seen: set[int] = set()
    total = 0
    for _, component in nlp.pipeline:
        model = getattr(component, "model", None)
        if model is None:
            continue
        for node in model.walk():
            if id(node) in seen:
                continue
            seen.add(id(node))
            total += sum(node.get_param(name).size for name in node.param_names if node.has_param(name))
    return {"trainable": total, "total": total, "trainable_pct": 100.0 if total else 0.0}


def read_progress(path: Path) -> list[dict[str, Any]]:
    """The logger's JSON lines (one per dev evaluation)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def word_pass_timing(progress: list[dict[str, Any]], train_words: int, train_seconds: float) -> dict[str, Any]:
    """Seconds per pass over the training words, from the last evaluation's clock and word count (spaCy logs words
    seen, not epochs, so this is not :func:`lsfa.runs.epoch_timing`; :func:`_timing` lays it out in the same keys)."""
    last = progress[-1] if progress else None
    if not last or not last["words"] or not train_words:
        return {"epochs_run": None, "mean_epoch_seconds": None, "train_tokens_per_second": None}
    epochs = last["words"] / train_words
    return {
        "epochs_run": round(epochs, 2),
        "mean_epoch_seconds": last["seconds"] / epochs,
        "train_tokens_per_second": last["words"] / last["seconds"] if last["seconds"] else None,
        "global_step": last["step"],
        "train_seconds_measured": train_seconds,
    }


def train_spacy(
    config: TrainConfig,
    options: dict[str, Any],
    run_dir: Path,
    log: Callable[[str], None] = print,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Train the spaCy peer for one grid cell and write ``run_dir/metrics.json``; returns the metrics.

    ``deadline`` is accepted for the grid's sake and not enforced: spaCy's own loop has no resumable stop,
    and its cells take minutes (the grid starts no cell after its deadline).
    """
    del deadline
    spacy = require_spacy()
    check_options(options)
    if config.max_train_time:
        log("note: max_train_time does not apply to the spaCy peer, which trains on its own schedule (max_steps)")
    wall_start = time.perf_counter()
    run_dir = Path(run_dir)
    work = run_dir / SPACY_DIR
    work.mkdir(parents=True, exist_ok=True)
    _, train_sentences, dev_sentences, _ = load_training_data(config)
    train_words = write_docbin(train_sentences, work / "train.spacy")
    write_docbin(dev_sentences, work / "dev.spacy")
    progress_file = work / "progress.jsonl"
    progress_file.unlink(missing_ok=True)
    write_spacy_config(work / "config.cfg", progress_file, options.get("optimize", "efficiency"))
    log(f"spacy train: {len(train_sentences)} train / {len(dev_sentences)} dev sentences -> {work / 'output'}")
    train_seconds, peak_mb = run_spacy_train(train_command(config, options, work), work / "train.log", config.threads)
    nlp = spacy.load(work / "output" / "model-best")
    progress = read_progress(progress_file)
    metrics: dict[str, Any] = {
        "system": "spacy",
        "spacy_version": spacy.__version__,
        "spacy_options": options,
        "config": config.model_dump(),
        "attention": "none",
        "precision": "fp32",
    }
    metrics.update(_evaluate_splits(nlp, config, dev_sentences, run_dir, options, log))
    metrics.update(_timing(progress, train_words, train_seconds, wall_start, peak_mb))
    metrics["parameters"] = count_parameters(nlp)
    metrics["machine"] = machine_info()
    RunFolder(run_dir).write_metrics(metrics)
    return metrics


def _evaluate_splits(nlp, config, dev_sentences, run_dir: Path, options, log) -> dict[str, Any]:
    """Tag dev and test with ``model-best``, write CoNLL predictions, score as lsfa runs are scored."""
    splits = {"dev": dev_sentences}
    if config.test_split:
        test = load_split(config.corpus, config.test_split, data_dir=config.data_dir).sentences
        splits["test"] = test[: config.test_limit]
    results: dict[str, Any] = {}
    for split, sentences in splits.items():
        start = time.perf_counter()
        tags = predict_tags(nlp, sentences, options.get("batch_size", 256))
        seconds = time.perf_counter() - start
        out = [Sentence(s.tokens, t, s.extra, s.doc_id, s.line) for s, t in zip(sentences, tags, strict=True)]
        write_conll(out, RunFolder(run_dir).predictions(split))
        result = evaluate_sentences([s.tags for s in sentences], tags, [s.tokens for s in sentences])
        result.update(
            {"inference_seconds": seconds, "ms_per_sentence": 1000 * seconds / max(len(sentences), 1), "cut_words": 0}
        )
        if split == "test":
            result["latency_ms"] = spacy_latency(nlp, sentences)
        results[split] = result
        micro = result["micro"]
        log(f"{split}: P {micro['precision']:.4f}  R {micro['recall']:.4f}  F1 {micro['f1']:.4f}")
    return results


def _timing(progress, train_words: int, train_seconds: float, wall_start: float, peak_mb: float) -> dict[str, Any]:
    timing = word_pass_timing(progress, train_words, train_seconds)
    mean = timing.get("mean_epoch_seconds")
    return {
        "global_step": timing.get("global_step"),
        "best_checkpoint": "spacy/output/model-best",
        "epochs_run": timing["epochs_run"],
        "epoch_log": progress,
        "train_seconds": train_seconds,
        "train_seconds_per_epoch": [],
        "mean_epoch_seconds": mean,
        "timing_note": "spaCy: seconds per pass over the training words, including its periodic dev evaluation",
        "train_tokens_per_second": timing["train_tokens_per_second"],
        "wall_seconds": time.perf_counter() - wall_start,
        "peak_memory_mb": peak_mb,
        "ranks": {"world_size": 1},
    }
