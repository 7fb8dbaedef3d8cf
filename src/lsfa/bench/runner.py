"""``lsfa bench``: the reference recipe against lsfa's optimised paths, measured in one process and one run.

Order of a run: load the sentences and both inference models (LoRA unmerged for the reference recipe,
merged for the optimised path); measure the matmul peak; pick the thread count and the batch plan that pay
(each optimisation measured on a sample, cumulatively); then the main throughput rounds on all sentences
(reference, optimised and, with ``--compare``, the encoder and spaCy, interleaved chunk by chunk); latency at
batch 1; prediction agreement and F1; finally training throughput with fresh LoRA models. Everything goes
into one JSON-able dict (see :func:`run_bench`); :mod:`lsfa.bench.report` renders it.
"""

from __future__ import annotations

import copy
import datetime as _dt
import gc
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from lsfa.bench import inference as inf
from lsfa.bench.compare import encoder_variant, spacy_variant, tagger_variant
from lsfa.bench.report import targets
from lsfa.bench.system import (
    bf16_supported,
    machine_description,
    matmul_peak,
    pick_device,
    process_peak_mb,
    thread_settings,
)
from lsfa.bench.training import TrainVariant, fresh_lora_model, measure_training, prepare_variant
from lsfa.data.corpora import load_split
from lsfa.data.encode import encode_sentences
from lsfa.errors import LsfaError
from lsfa.eval.report import evaluate_sentences
from lsfa.models.optimise import optimise_for_inference
from lsfa.models.packing import auto_pack_tokens, packing_supported
from lsfa.models.saving import META_FILE, load_tagger, read_meta
from lsfa.precision import PRECISIONS, resolve_precision
from lsfa.training.collate import packing_collator
from lsfa.training.dataset import inside_map, label_ids_for

Log = Callable[[str], None]


@dataclass
class BenchOptions:
    """Everything ``lsfa bench`` can be told; defaults are the documented benchmark."""

    model_dir: str
    corpus: str
    split: str = "test"
    data_dir: str | None = None
    sentences: int | None = None
    latency_sentences: int = 100
    rounds: int = 4
    train_steps: int = 24
    train_batch_size: int = 8
    reference_batch_size: int = 8
    max_batch_tokens: int = 4096
    pack: str = "auto"  # auto: keep packing only if it measured faster; on; off
    pack_tokens: int | None = None  # None: lsfa.models.packing.auto_pack_tokens of the benchmark rows
    precision: str = "fastest"  # of the optimised path: fastest = bf16-full where bf16 pays, else fp32
    threads: int | None = None  # None: try the candidates and keep the fastest
    ablation_sentences: int = 200
    compare: bool = False
    encoder_dir: str | None = None
    encoder_model: str | None = "mpnet-base"
    taggers: list[str] = field(default_factory=list)  # more tagger folders timed beside it, "[NAME=]DIR"
    spacy_model: str = "en_core_web_sm"
    device: str = "auto"
    matmul_size: int = 2048
    matmul_seconds: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        positive = {
            "--latency-sentences": self.latency_sentences,
            "--rounds": self.rounds,
            "--train-batch-size": self.train_batch_size,
            "--max-batch-tokens": self.max_batch_tokens,
            "--matmul-size": self.matmul_size,
        }
        for flag, value in positive.items():
            if value < 1:
                raise LsfaError(f"{flag} must be at least 1, got {value}")
        if self.pack_tokens is not None and self.pack_tokens < 1:
            raise LsfaError(f"--pack-tokens must be at least 1, got {self.pack_tokens}")
        if self.sentences is not None and self.sentences < 1:
            raise LsfaError(f"--sentences must be at least 1, got {self.sentences}")
        if self.train_steps < 0 or self.ablation_sentences < 0:
            raise LsfaError("--train-steps and --ablation-sentences cannot be negative")
        if self.threads is not None and self.threads < 1:
            raise LsfaError(f"--threads must be at least 1, got {self.threads}")
        if self.pack not in ("auto", "on", "off"):
            raise LsfaError(f"--pack must be auto, on or off, not {self.pack!r}")
        if self.precision not in (FASTEST, *PRECISIONS):
            raise LsfaError(f"--precision must be one of {', '.join((FASTEST, *PRECISIONS))}, not {self.precision!r}")
        self._validate_taggers()

    def _validate_taggers(self) -> None:
        """Each ``--tagger-dir`` a tagger folder, each name once (names key the JSON's ``compare`` entries)."""
        names = []
        for given in self.taggers:
            name, _, folder = given.rpartition("=")
            if not (Path(folder) / META_FILE).is_file():
                raise LsfaError(f"--tagger-dir {given}: {folder} is not a tagger folder (no {META_FILE})")
            names.append(name)
        taken = {"reference", "optimised", "encoder", "spacy"}
        clash = [n for n in names if n and (n in taken or names.count(n) > 1)]
        if clash:
            raise LsfaError(f"--tagger-dir: name {clash[0]!r} is used twice or taken (reference, optimised, "
                            "encoder, spacy)")  # fmt: skip


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_bench(options: BenchOptions, log: Log = _stderr) -> dict[str, Any]:
    """Run the whole benchmark and return every figure (the ``--json`` document)."""
    options.validate()
    started = time.perf_counter()
    device = pick_device(options.device)
    meta = read_meta(options.model_dir)
    split = load_split(options.corpus, options.split, data_dir=options.data_dir)
    sentences = [s for s in split.sentences if s.tokens][: options.sentences]
    if not sentences:
        raise LsfaError(f"{options.corpus} {options.split}: no non-empty sentences to benchmark")
    words = [s.tokens for s in sentences]
    documents = [s.doc_id for s in sentences] if meta.context != "sentence" else None
    default_threads = torch.get_num_threads()
    precision = options.precision
    if precision == FASTEST:
        precision = "bf16-full" if bf16_supported(device) else "fp32"
    precision = resolve_precision(precision, device)  # auto means what it means everywhere: bf16 where it pays

    log(f"bench: {len(sentences)} sentences of {options.corpus}/{options.split}, device {device}, {precision}")
    reference_model, tokenizer, _ = load_tagger(options.model_dir, merge=False)
    if options.pack_tokens is None:
        options = replace(options, pack_tokens=_auto_pack_tokens(tokenizer, words, documents, meta))
    merged_model = load_tagger(options.model_dir, merge=True)[0].to(device)
    # The ablation needs merged fp32 weights after the optimised model has cached its bf16 ones.
    keep_fp32 = options.ablation_sentences > 0 and precision != "fp32"
    merged_fp32 = copy.deepcopy(merged_model) if keep_fp32 else merged_model
    optimised_model = optimise_for_inference(merged_model, precision)
    reference = inf.TaggerVariant(
        "reference",
        reference_model.to(device),
        tokenizer,
        inf.InferenceSettings(precision="fp32", batch_size=options.reference_batch_size, threads=default_threads),
        meta.max_length,
        meta.context,
        "fp32, " + ("LoRA adapter unmerged" if meta.weights == "lora" else f"{meta.weights} weights (no adapter)"),
    )
    optimised = inf.TaggerVariant(
        "optimised",
        optimised_model,
        tokenizer,
        inf.InferenceSettings(
            precision=precision,
            batch_size=options.reference_batch_size,
            sort_by_length=True,
            max_batch_tokens=options.max_batch_tokens,
            pack=False,
            pack_tokens=options.pack_tokens,
        ),
        meta.max_length,
        meta.context,
        _precision_note(precision) + ", length-sorted token-budget batches",
    )
    del reference_model, merged_model, optimised_model  # the variants hold them; let `del` below free them
    result: dict[str, Any] = {
        "command": "lsfa " + " ".join(sys.argv[1:]) if sys.argv and "lsfa" in sys.argv[0] else None,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "options": asdict(options),
        "model": {"dir": options.model_dir, **meta.model_dump(exclude={"extra"})},
        "data": {
            "corpus": options.corpus,
            "split": options.split,
            "sentences": len(sentences),
            "words": sum(len(w) for w in words),
        },
        "machine": machine_description(device),
    }

    log("matmul peak ...")
    result["peak"] = _peaks(device, options)
    torch.set_num_threads(default_threads)
    _warm_up([reference, optimised], words, documents)

    chosen_threads, result["threads"] = _choose_threads(optimised, words, documents, options, device, log)
    optimised.settings = optimised.settings.changed(threads=chosen_threads)
    result["threads"].update({"reference": default_threads, "optimised": chosen_threads, **thread_settings()})

    result["ablation"] = _ablation(reference, optimised, merged_fp32, words, documents, options, log)
    del merged_fp32
    use_pack = _decide_packing(options, result["ablation"], optimised.model)
    if use_pack:
        optimised.settings = optimised.settings.changed(pack=True)
        optimised.note += ", packed rows"

    others = _comparison_systems(options, meta, optimised, device, result)
    result["inference"] = _main_rounds(reference, optimised, others, words, documents, sentences, options, log)
    result["inference"]["mfu"] = _utilisation(optimised, result["peak"], precision)
    result["latency"] = _latency(reference, optimised, others, words, documents, options, log)
    if options.compare or options.taggers:
        result["compare"] = _compare_summary(others, result, sentences)
        result.pop("compare_skipped", None)

    del reference, optimised, others
    gc.collect()
    torch.set_num_threads(default_threads)
    training_precision = TRAINING_PRECISION.get(precision, precision)  # training needs fp32 masters
    result["training"] = _training(options, meta, sentences, tokenizer, device, training_precision, log)
    result["memory"] = {"process_peak_rss_mb": process_peak_mb()}
    result["seconds"] = time.perf_counter() - started

    result["targets"] = targets(result)
    return result


FASTEST = "fastest"
"""The bench's own default for its optimised path: every weight in bf16 (bf16-full) where bf16 pays, else fp32.
Not ``auto``, which everywhere means bf16 autocast where bf16 pays (lsfa.precision)."""
TRAINING_PRECISION = {"bf16-full": "bf16", "int8": "auto"}
"""What the bench trains in when its optimised inference path rewrites weights (training needs fp32 masters)."""


def _precision_note(precision: str) -> str:
    """How the optimised path computes, for the report."""
    if precision == "int8":
        return "merged weights, linear layers dynamically quantised to int8 (CPU)"
    if precision == "bf16-full":
        return "merged weights, every weight and activation in bf16 (bf16-full)"
    if precision == "bf16":
        return "bf16 autocast, merged weights cached in bf16"
    return f"{precision}, merged weights"


def _auto_pack_tokens(tokenizer, words, documents, meta) -> int:
    """The pack length :func:`lsfa.models.packing.auto_pack_tokens` picks for the benchmark rows."""
    encoded = encode_sentences(tokenizer, words, max_length=meta.max_length, documents=documents, context=meta.context)
    return auto_pack_tokens([len(row.input_ids) for row in encoded.examples])


# --- machine -----------------------------------------------------------------------------------------------


def _peaks(device: torch.device, options: BenchOptions) -> dict[str, Any]:
    peaks = {"fp32": matmul_peak(torch.float32, device, options.matmul_size, options.matmul_seconds)}
    if bf16_supported(device):
        peaks["bf16"] = matmul_peak(torch.bfloat16, device, options.matmul_size, options.matmul_seconds)
    else:
        peaks["bf16"] = None
    return peaks


def _warm_up(variants, words, documents, n: int = 8) -> None:
    """One small untimed call per variant: kernel selection and first-touch allocations happen here."""
    indices = list(range(min(n, len(words))))
    for variant in variants:
        inf.predict(variant, [words[k] for k in indices], [documents[k] for k in indices] if documents else None)


def _thread_candidates() -> list[int]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return sorted({1, max(1, cores // 2), cores})


def _choose_threads(optimised, words, documents, options, device, log) -> tuple[int | None, dict[str, Any]]:
    """Try each thread count on a sample with the optimised path and keep the fastest (CPU only)."""
    if options.threads is not None:
        return options.threads, {"chosen_by": "--threads"}
    if device.type != "cpu":
        return None, {"chosen_by": "not tried (GPU run)"}
    candidates = _thread_candidates()
    if len(candidates) == 1:
        return candidates[0], {"chosen_by": "single core", "tried": {}}
    log(f"threads: trying {candidates} ...")
    sample = min(len(words), 64)
    variants = [inf.with_settings(optimised, f"threads={t}", threads=t) for t in candidates]
    inf.interleaved_rounds(variants, sample, 2, lambda v, chunk: inf.run_chunk(v, words, documents, chunk))
    speeds = {t: inf.throughput(v)["sentences_per_second"] for t, v in zip(candidates, variants, strict=True)}
    best = max(speeds, key=lambda t: speeds[t])
    return best, {"chosen_by": f"fastest on {sample} sentences", "tried": {str(t): s for t, s in speeds.items()}}


# --- ablation ----------------------------------------------------------------------------------------------


def _ablation(reference, optimised, merged_fp32, words, documents, options, log) -> list[dict[str, Any]]:
    """Each optimisation added on top of the previous ones, on the same sample, at the chosen thread count."""
    sample = min(options.ablation_sentences, len(words))
    if sample == 0:
        return []
    fp32_file_order = inf.InferenceSettings(batch_size=options.reference_batch_size, threads=optimised.settings.threads)
    precision = optimised.settings.precision
    plain = inf.TaggerVariant("reference", reference.model, reference.tokenizer, fp32_file_order,
                              reference.max_length, reference.context)  # fmt: skip
    merged = replace(plain, model=merged_fp32)
    steps = [plain, inf.with_settings(merged, "+ merged LoRA")]
    if precision in ("bf16", "bf16-full"):
        steps.append(inf.with_settings(merged, "+ bf16 autocast", precision="bf16"))
    cast = replace(plain, model=optimised.model)
    if precision == "bf16":
        steps.append(inf.with_settings(cast, "+ bf16 weights cached", precision=precision))
    if precision == "int8":
        steps.append(inf.with_settings(cast, "+ int8 linear layers", precision=precision))
    if precision == "bf16-full":
        cached = optimise_for_inference(copy.deepcopy(merged_fp32), "bf16")
        steps.append(inf.with_settings(replace(plain, model=cached), "+ bf16 weights cached", precision="bf16"))
        steps.append(inf.with_settings(cast, "+ every weight in bf16 (bf16-full)", precision=precision))
    steps.append(inf.with_settings(cast, "+ length-sorted", precision=precision, sort_by_length=True))
    budget = {"precision": precision, "sort_by_length": True, "max_batch_tokens": options.max_batch_tokens}
    steps.append(inf.with_settings(cast, f"+ token-budget batches ({options.max_batch_tokens})", **budget))
    supported, why = packing_supported(optimised.model)
    if supported:
        steps.append(inf.with_settings(cast, f"+ packing ({options.pack_tokens})", **budget, pack=True,
                                       pack_tokens=options.pack_tokens))  # fmt: skip
    log(f"ablation: {len(steps)} variants on {sample} sentences ...")
    rounds = min(2, options.rounds)
    inf.interleaved_rounds(steps, sample, rounds, lambda v, chunk: inf.run_chunk(v, words, documents, chunk))
    first = max(steps[0].seconds, 1e-12)
    rows = []
    for step in steps:
        row = inf.throughput(step)
        row["speedup_vs_reference"] = first / max(step.seconds, 1e-12)
        row.pop("memory", None)
        rows.append(row)
    if not supported:
        rows.append({"name": "+ packing", "skipped": why})
    return rows


def _decide_packing(options: BenchOptions, ablation: list[dict[str, Any]], model) -> bool:
    """Packing stays on only if it was measured faster than plain token-budget batches (``--pack auto``)."""
    if options.pack == "off" or not packing_supported(model)[0]:
        return False
    if options.pack == "on":
        return True
    speeds = {row["name"].split(" (")[0]: row.get("sentences_per_second") for row in ablation}
    packed, plain = speeds.get("+ packing"), speeds.get("+ token-budget batches")
    return bool(packed and plain and packed > plain)


# --- main rounds -------------------------------------------------------------------------------------------


def _comparison_systems(options, meta, optimised, device, result) -> list[Any]:
    """The ``--tagger-dir`` variants, then the encoder and spaCy variants for ``--compare`` (skips recorded in
    ``result['compare_skipped']``). A ``--tagger-dir`` that cannot load is an error: it was asked for by name."""
    others: list[Any] = [tagger_variant(given, optimised.settings, device) for given in options.taggers]
    if not options.compare:
        return others
    skipped: dict[str, str] = {}
    settings = optimised.settings.changed(pack=False)
    try:  # an optional baseline that cannot load must not cost the whole benchmark
        encoder, why = encoder_variant(meta.labels, settings, device, options.encoder_dir, options.encoder_model)
    except Exception as error:
        encoder, why = None, f"could not load the encoder: {type(error).__name__}: {error}"
    if encoder is not None:
        others.append(encoder)
    else:
        skipped["encoder"] = why
    spacy, why = spacy_variant(options.spacy_model, meta.labels)
    if spacy is not None:
        others.append(spacy)
    else:
        skipped["spacy"] = why
    result["compare_skipped"] = skipped
    return others


def _run_any(variant, words, documents, chunk) -> None:
    if isinstance(variant, inf.TaggerVariant):
        inf.run_chunk(variant, words, documents, chunk)
    else:
        variant.run(words, chunk)


def _main_rounds(reference, optimised, others, words, documents, sentences, options, log) -> dict[str, Any]:
    log(f"throughput: {len(words)} sentences in {options.rounds} interleaved rounds ...")
    for variant in [reference, optimised, *others]:
        if not isinstance(variant, inf.TaggerVariant):
            variant.warm_up(words)
            continue
        variant.reset()
        if variant is not reference and variant is not optimised:
            _warm_up([variant], words, documents)
    variants = [reference, optimised, *others]
    inf.interleaved_rounds(variants, len(words), options.rounds, lambda v, c: _run_any(v, words, documents, c), log)
    ref, opt = inf.throughput(reference), inf.throughput(optimised)
    gold = [s.tags for s in sentences]
    return {
        "reference": ref,
        "optimised": opt,
        "speedup": opt["sentences_per_second"] / max(ref["sentences_per_second"], 1e-12),
        "agreement": inf.agreement(gold, words, reference, optimised),
        "non_embedding_parameters": inf.non_embedding_parameters(optimised.model),
    }


def _utilisation(optimised, peaks, precision) -> dict[str, Any]:
    """MFU of the optimised run against the matmul peak of its precision, end to end and forward-only."""
    peak = peaks.get({"bf16-full": "bf16", "int8": "fp32"}.get(precision, precision)) or peaks["fp32"]
    parameters = inf.non_embedding_parameters(optimised.model)
    forward_seconds = optimised.seconds - optimised.encode_seconds
    return {
        "peak_used": f"{peak['dtype']} matmul peak",
        "peak_gflops": peak["gflops"],
        "achieved_gflops": 2 * parameters * optimised.tokens / max(optimised.seconds, 1e-12) / 1e9,
        "mfu": inf.model_flops_utilisation(parameters, optimised.tokens, optimised.seconds, peak["gflops"]),
        "mfu_forward_only": inf.model_flops_utilisation(parameters, optimised.tokens, forward_seconds, peak["gflops"]),
        "formula": "2 x non-embedding parameters x real sub-tokens / seconds / peak",
    }


def _latency(reference, optimised, others, words, documents, options, log) -> dict[str, Any]:
    count = min(options.latency_sentences, len(words))
    variants = [reference, optimised] + [v for v in others if isinstance(v, inf.TaggerVariant)]
    log(f"latency: {count} sentences at batch 1 ...")
    per_variant = inf.latency(variants, words, documents, list(range(count)))
    out: dict[str, Any] = {"batch_size": 1, **per_variant}
    if count < 100:
        out["note"] = f"only {count} sentences (the paper's protocol uses at least 100)"
    ref_mean, opt_mean = per_variant["reference"]["mean_ms"], per_variant["optimised"]["mean_ms"]
    out["speedup"] = ref_mean / opt_mean if ref_mean and opt_mean else None
    return out


def _compare_summary(others, result, sentences) -> dict[str, Any]:
    """Throughput of each other system and its ratio to lsfa's optimised path and to the reference recipe."""
    lsfa_fast = result["inference"]["optimised"]["sentences_per_second"]
    lsfa_ref = result["inference"]["reference"]["sentences_per_second"]
    summary: dict[str, Any] = {}
    for variant in others:
        row = inf.throughput(variant) if isinstance(variant, inf.TaggerVariant) else variant.throughput()
        speed = row["sentences_per_second"]
        row["ratio_to_lsfa_optimised"] = speed / lsfa_fast
        row["ratio_to_lsfa_reference"] = speed / lsfa_ref
        comparable = getattr(variant, "same_types", False) or variant.note.startswith("trained")
        if comparable:
            indices = sorted(variant.predictions)
            row["f1"] = evaluate_sentences(
                [sentences[k].tags for k in indices],
                [variant.predictions[k] for k in indices],
                [sentences[k].tokens for k in indices],
            )["micro"]["f1"]
        summary[variant.name] = row
    summary.update({name: {"skipped": why} for name, why in result.get("compare_skipped", {}).items()})
    return summary


# --- training ----------------------------------------------------------------------------------------------


def _training(options, meta, sentences, tokenizer, device, precision, log) -> dict[str, Any]:
    """Tokens per second of the reference and the optimised training recipe on fresh LoRA models."""
    if options.train_steps == 0:
        return {"skipped": "--train-steps 0"}
    label2id = {label: k for k, label in enumerate(meta.labels)}
    encoded = encode_sentences(
        tokenizer,
        [s.tokens for s in sentences],
        label_ids_for(sentences, label2id),
        max_length=meta.max_length,
        label_all_subtokens=meta.label_all_subtokens,
        inside_of=inside_map(meta.labels),
    )
    rows = encoded.examples
    lengths = [len(row.input_ids) for row in rows]
    variants = [
        TrainVariant("reference", "fp32", "random", options.train_batch_size),
        TrainVariant(
            "optimised",
            precision,
            "random",
            options.train_batch_size,
            cast_frozen=precision == "bf16",
            kernels="fast",
        ),
    ]
    log(f"training: {options.train_steps} steps per recipe on fresh LoRA models of {meta.base_model} ...")
    try:
        for variant in variants:
            model = fresh_lora_model(meta.base_model, meta.labels, meta.attention, device, options.seed)
            prepare_variant(variant, model, lengths, options.seed, learning_rate=2e-4)
            if variant.name == "optimised":
                variant.collator = packing_collator(model, tokenizer.pad_token_id, lengths)[0]
    except LsfaError as error:
        return {"skipped": f"cannot build a fresh LoRA model of {meta.base_model}: {error}"}
    threads = torch.get_num_threads()
    measure_training(variants, rows, tokenizer.pad_token_id, device, options.train_steps, options.rounds, log=log)
    ref, opt = variants[0].result(), variants[1].result()
    return {
        "reference": ref,
        "optimised": opt,
        "speedup": opt["tokens_per_second"] / max(ref["tokens_per_second"], 1e-12),
        "threads": threads,
        "data": "the benchmark sentences with their gold tags (throughput only; the models are discarded)",
        "model": f"{meta.base_model} + new head + fresh LoRA (r=32, alpha=64, dropout 0.05, all linear layers)",
    }
