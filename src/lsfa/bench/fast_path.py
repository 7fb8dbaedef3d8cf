"""Choose a tagger's fastest inference path on this CPU by measurement, and record it in the tagger folder.

``lsfa bench --choose-fast-path`` runs this. Candidates are timed on the same sentences of a (dev) split, in
interleaved rounds (best round kept), and scored there: a path is eligible when its strict F1 is within
``f1_tolerance`` of fp32's on those sentences, and the fastest eligible path wins. Three stages keep the number of
variants small on a 2-core CPU: the precision (fp32, bf16 autocast, bf16-full, int8) at packed rows and a
2,048-token budget; then packing on or off; then the token budget (1,024 / 2,048 / 4,096). The record (choice,
every measured row, CPU, threads, split, date) goes into the folder's ``lsfa.json`` under this CPU's label, where
:class:`lsfa.Tagger`, ``lsfa predict`` and ``lsfa serve`` read it (:mod:`lsfa.inference.fast_path`).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from lsfa.data.corpora import load_split
from lsfa.errors import LsfaError
from lsfa.eval.metrics import strict_prf
from lsfa.inference.fast_path import add_record, this_cpu
from lsfa.inference.options import InferenceOptions
from lsfa.inference.tagger import Tagger, resolve_tagger_folder
from lsfa.models.meta import read_meta, update_meta
from lsfa.version import __version__

PRECISIONS = ("fp32", "bf16", "bf16-full", "int8")
BUDGETS = (1024, 2048, 4096)
START = {"pack": True, "max_batch_tokens": 2048}


class _Candidate:
    """One path: a loaded tagger (shared by the paths that differ only in batching) and its options."""

    def __init__(self, tagger: Tagger, options: InferenceOptions) -> None:
        self.tagger = Tagger(tagger.model, tagger.tokenizer, tagger.meta, options)
        self.options = options
        self.seconds = float("inf")
        self.f1: float | None = None

    def row(self, reference_f1: float | None, sentences: int) -> dict[str, Any]:
        delta = None if self.f1 is None or reference_f1 is None else round(self.f1 - reference_f1, 5)
        return {"precision": self.options.precision, "pack": self.options.pack,
                "max_batch_tokens": self.options.max_batch_tokens, "seconds": round(self.seconds, 3),
                "sentences_per_second": round(sentences / self.seconds, 2), "f1": self.f1,
                "f1_change_vs_fp32": delta}  # fmt: skip


def _measure(candidates: Sequence[_Candidate], words, gold, rounds: int) -> None:
    """Time every candidate over all sentences in interleaved rounds (best kept) and score its tags."""
    for _ in range(rounds):
        for candidate in candidates:
            start = time.perf_counter()
            predicted = candidate.tagger.predict_words(words)
            candidate.seconds = min(candidate.seconds, time.perf_counter() - start)
            candidate.f1 = strict_prf(gold, predicted.tags, scheme="IOB2")["micro"]["f1"]


def _eligible_fastest(candidates: Sequence[_Candidate], reference_f1: float, tolerance: float) -> _Candidate:
    eligible = [c for c in candidates if c.f1 is not None and c.f1 >= reference_f1 - tolerance]
    return min(eligible or candidates[:1], key=lambda c: c.seconds)


def _load(folder, precision: str) -> Tagger | None:
    """The tagger at ``precision``, or None where this machine cannot run it (int8 off CPU, bf16 unsupported)."""
    try:
        return Tagger.load(folder, precision=precision, fast_path=False, **START)
    except (LsfaError, RuntimeError):
        return None


def choose_fast_path(
    model_dir: str,
    corpus: str,
    split: str = "dev",
    sentences: int | None = 500,
    data_dir: str | None = None,
    f1_tolerance: float = 0.002,
    rounds: int = 2,
    record: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure the candidate paths, pick the fastest within ``f1_tolerance`` of fp32's F1, and (``record``) write
    it to the tagger folder; return the record."""
    folder = resolve_tagger_folder(model_dir)
    chosen_sentences = [s for s in load_split(corpus, split, data_dir=data_dir).sentences if s.tokens][:sentences]
    if not chosen_sentences:
        raise LsfaError(f"{corpus} {split}: no sentences to measure on")
    words, gold = [s.tokens for s in chosen_sentences], [s.tags for s in chosen_sentences]
    loaded = {precision: tagger for precision in PRECISIONS if (tagger := _load(folder, precision)) is not None}
    log(f"fast path: precisions {', '.join(loaded)} on {len(words)} sentences of {corpus}/{split} ...")
    stage = [_Candidate(tagger, tagger.options) for tagger in loaded.values()]
    _measure(stage, words, gold, rounds)
    reference_f1 = next(c.f1 for c in stage if c.options.precision == "fp32")
    best = _eligible_fastest(stage, reference_f1, f1_tolerance)
    measured = list(stage)
    for changes in ([{"pack": False}], [{"max_batch_tokens": b} for b in BUDGETS if b != START["max_batch_tokens"]]):
        log(f"fast path: {best.options.precision}, trying {changes} ...")
        stage = [best] + [_Candidate(best.tagger, InferenceOptions.of(best.options, **c)) for c in changes]
        _measure(stage, words, gold, rounds)
        measured += stage[1:]
        best = _eligible_fastest(stage, reference_f1, f1_tolerance)
    result = {
        "choice": {"precision": best.options.precision, "pack": best.options.pack,
                   "max_batch_tokens": best.options.max_batch_tokens},
        "f1_change_vs_fp32": round(best.f1 - reference_f1, 5) if best.f1 is not None else None,
        "measured": [c.row(reference_f1, len(words)) for c in measured],
        "cpu": this_cpu(), "threads": torch.get_num_threads(), "corpus": corpus, "split": split,
        "sentences": len(words), "f1_tolerance": f1_tolerance, "rounds": rounds,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "lsfa_version": __version__,
    }  # fmt: skip
    if record:
        meta = read_meta(folder)
        update_meta(folder, extra=add_record(meta.extra, result["cpu"], result))
    return result
