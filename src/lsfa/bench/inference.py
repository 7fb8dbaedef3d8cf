"""Inference variants, timed the same way: encode the sentences, run the model, read the tags back.

A variant is a model plus a batch plan (:class:`InferenceSettings`). The *reference recipe* is the paper's
setting: fp32, LoRA adapter not merged, batches of 8 sentences in file order padded to the longest. lsfa's
*optimised path* is what :func:`lsfa.inference.predictor.predict_words` does with its fast options: merged
weights, bf16 autocast, length-sorted token-budget batches, optionally packed rows. Every timing covers the
whole job a user waits for (sub-word encoding included), not only the forward passes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from lsfa.bench.system import PeakMemory, synchronize
from lsfa.data.encode import encode_sentences
from lsfa.eval.report import evaluate_sentences
from lsfa.inference.options import InferenceOptions
from lsfa.inference.predictor import predict_encoded


class InferenceSettings(InferenceOptions):
    """How a bench variant batches and computes: the :class:`InferenceOptions` every tagger run takes, plus what
    only a benchmark varies (file order vs length-sorted rows, the thread count; ``threads=None`` keeps the
    process setting). Defaults are the paper's reference recipe: fp32, batches of 8, file order."""

    precision: Literal["fp32", "bf16", "bf16-full", "int8"] = "fp32"
    batch_size: int = 8
    pack_tokens: int | None = 256
    sort_by_length: bool = False
    threads: int | None = None

    def options(self) -> InferenceOptions:
        """The tagger run options of this variant (what the predictor takes)."""
        return InferenceOptions.of(None, **self.model_dump(exclude={"sort_by_length", "threads"}))

    def changed(self, **changes: Any) -> InferenceSettings:
        """A validated copy with ``changes``."""
        return InferenceSettings.model_validate(self.model_dump() | changes)

    def batching(self) -> str:
        """The batch plan in words, for reports."""
        if self.pack:
            return f"packed rows of <= {self.pack_tokens} tokens, <= {self.max_batch_tokens} tokens per batch"
        if self.max_batch_tokens:
            return f"<= {self.max_batch_tokens} padded tokens per batch, length-sorted"
        order = "length-sorted" if self.sort_by_length else "file order"
        return f"{self.batch_size} sentences per batch, {order}"

    def describe(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "batching": self.batching(),
            "batch_size": None if self.max_batch_tokens else self.batch_size,
            "max_batch_tokens": self.max_batch_tokens,
            "pack": self.pack,
            "pack_tokens": self.pack_tokens if self.pack else None,
            "threads": self.threads,
        }


@dataclass
class TaggerVariant:
    """A model with its tokenizer and settings, plus what was measured for it."""

    name: str
    model: Any
    tokenizer: Any
    settings: InferenceSettings
    max_length: int = 512
    context: str = "sentence"
    note: str = ""
    seconds: float = 0.0
    encode_seconds: float = 0.0
    sentences: int = 0
    words: int = 0
    tokens: int = 0
    memory: PeakMemory | None = None
    predictions: dict[int, list[str]] = field(default_factory=dict)

    def reset(self) -> None:
        self.seconds = self.encode_seconds = 0.0
        self.sentences = self.words = self.tokens = 0
        self.predictions = {}


def with_settings(variant: TaggerVariant, name: str, **changes: Any) -> TaggerVariant:
    """A new variant sharing the model of ``variant`` with some settings changed."""
    settings = variant.settings.changed(**changes)
    return TaggerVariant(name, variant.model, variant.tokenizer, settings, variant.max_length, variant.context)


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def predict(variant: TaggerVariant, sentences: Sequence[Sequence[str]], documents: Sequence[int] | None):
    """Encode and tag ``sentences`` with ``variant``; returns predictions, total and encoding seconds, tokens."""
    settings = variant.settings
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = device_of(variant.model)
    synchronize(device)
    start = time.perf_counter()
    encoded = encode_sentences(
        variant.tokenizer, sentences, max_length=variant.max_length, documents=documents, context=variant.context
    )
    encoded_at = time.perf_counter()
    id2label = {int(k): v for k, v in variant.model.config.id2label.items()}
    result = predict_encoded(
        variant.model,
        encoded,
        id2label,
        variant.tokenizer.pad_token_id,
        [len(words) for words in sentences],
        settings.options(),
        sort_by_length=settings.sort_by_length,
    )
    synchronize(device)
    end = time.perf_counter()
    return result, end - start, encoded_at - start, encoded.n_subtokens


def run_chunk(variant: TaggerVariant, sentences, documents, indices: Sequence[int]) -> None:
    """Tag one chunk of sentences with ``variant`` and add its time and counts to the variant's totals."""
    words = [sentences[k] for k in indices]
    docs = [documents[k] for k in indices] if documents is not None else None
    if variant.memory is None:
        variant.memory = PeakMemory(device_of(variant.model))
    with variant.memory.measure():
        result, seconds, encode_seconds, tokens = predict(variant, words, docs)
    variant.seconds += seconds
    variant.encode_seconds += encode_seconds
    variant.sentences += len(indices)
    variant.words += sum(len(w) for w in words)
    variant.tokens += tokens
    for index, tags in zip(indices, result.tags, strict=True):
        variant.predictions[index] = tags


def interleaved_rounds(
    variants: Sequence[Any],
    n_items: int,
    rounds: int,
    run: Callable[[Any, list[int]], None],
    log: Callable[[str], None] | None = None,
) -> None:
    """Run every variant on the same chunks of items, one chunk per round, rotating who goes first.

    Machine noise (another process, frequency changes) then lands on all variants alike instead of on
    whichever happened to run during the disturbance.
    """
    rounds = max(1, min(rounds, n_items))
    bounds = [round(n_items * r / rounds) for r in range(rounds + 1)]
    for index in range(rounds):
        chunk = list(range(bounds[index], bounds[index + 1]))
        shift = index % len(variants)
        for variant in list(variants[shift:]) + list(variants[:shift]):
            run(variant, chunk)
        if log:
            log(f"  round {index + 1}/{rounds} done ({bounds[index + 1]}/{n_items})")


def throughput(variant: TaggerVariant) -> dict[str, Any]:
    """Sentences, words and sub-tokens per second over everything the variant tagged."""
    seconds = max(variant.seconds, 1e-12)
    out = {
        "name": variant.name,
        "note": variant.note,
        **variant.settings.describe(),
        "sentences": variant.sentences,
        "words": variant.words,
        "tokens": variant.tokens,
        "seconds": variant.seconds,
        "encode_seconds": variant.encode_seconds,
        "sentences_per_second": variant.sentences / seconds,
        "words_per_second": variant.words / seconds,
        "tokens_per_second": variant.tokens / seconds,
    }
    if variant.memory is not None:
        out["memory"] = variant.memory.as_dict()
    return out


def latency(
    variants: Sequence[TaggerVariant], sentences, documents, indices: Sequence[int], warmup: int = 3
) -> dict[str, dict[str, Any]]:
    """Milliseconds per sentence at batch 1 for each variant, sentence by sentence, alternating the order.

    Each call encodes and tags one sentence alone, as an interactive user or a server request would.
    """
    times: dict[str, list[float]] = {variant.name: [] for variant in variants}
    for position, index in enumerate(list(indices[:warmup]) + list(indices)):
        ordered = variants if position % 2 == 0 else list(reversed(variants))
        for variant in ordered:
            docs = [documents[index]] if documents is not None else None
            _, seconds, _, _ = predict(with_settings(variant, variant.name, batch_size=1), [sentences[index]], docs)
            if position >= warmup:
                times[variant.name].append(1000 * seconds)
    return {name: latency_summary(values) for name, values in times.items()}


def latency_summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean ± standard deviation (the paper's Table 7), median and 95th percentile, in milliseconds."""
    ordered = sorted(values)
    return {
        "sentences": len(values),
        "mean_ms": statistics.fmean(values) if values else None,
        "std_ms": statistics.stdev(values) if len(values) > 1 else 0.0,
        "median_ms": statistics.median(values) if values else None,
        "p95_ms": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if values else None,
    }


def agreement(gold: Sequence[Sequence[str]], tokens, first: TaggerVariant, second: TaggerVariant) -> dict[str, Any]:
    """Share of identical tags between two variants and the strict span F1 of each against the gold tags."""
    indices = sorted(set(first.predictions) & set(second.predictions))
    same = total = 0
    for index in indices:
        for a, b in zip(first.predictions[index], second.predictions[index], strict=True):
            same += a == b
            total += 1
    gold_tags = [gold[k] for k in indices]
    words = [tokens[k] for k in indices]
    f1 = {}
    for variant in (first, second):
        result = evaluate_sentences(gold_tags, [variant.predictions[k] for k in indices], words)
        f1[variant.name] = result["micro"]["f1"]
    return {
        "sentences": len(indices),
        "words": total,
        "identical_tags": same / total if total else None,
        "differing_tags": total - same,
        "f1": f1,
        "f1_difference_points": 100 * (f1[second.name] - f1[first.name]),
    }


def non_embedding_parameters(model) -> int:
    """Parameters that cost a multiply-add per token: everything except embedding tables (lookups)."""
    total = sum(p.numel() for p in model.parameters())
    embedded = sum(
        p.numel() for module in model.modules() if isinstance(module, torch.nn.Embedding) for p in module.parameters()
    )
    return total - embedded


def model_flops_utilisation(parameters: int, tokens: int, seconds: float, peak_gflops: float) -> float | None:
    """MFU = 2 x non-embedding parameters x tokens / time / peak (attention score products not counted)."""
    if seconds <= 0 or peak_gflops <= 0:
        return None
    return 2 * parameters * tokens / seconds / (peak_gflops * 1e9)
