"""Corpus statistics: the numbers to check a corpus against its published description.

Counting is done on the IOB2 tags a :class:`~lsfa.data.corpora.Corpus` holds, with the same span
decoding the metrics use, so the entity counts here are the ones evaluation sees.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.table import Table

from lsfa.data.conll import TOKENS, ConllFile
from lsfa.data.corpora import Corpus
from lsfa.data.schemes import LENGTH_BUCKETS, Span, length_bucket, to_spans


def split_stats(split: ConllFile, labels: list[str]) -> dict[str, Any]:
    """Counts for one split: sentences, words, documents, entities per type and by length in words."""
    per_type: Counter[str] = Counter({label: 0 for label in labels})
    by_length: Counter[str] = Counter({bucket: 0 for bucket in LENGTH_BUCKETS})
    for sentence in split.sentences:
        spans = [Span(k, k + 1, tag) for k, tag in enumerate(sentence.tags)] if split.scheme == TOKENS else None
        for span in spans or to_spans(sentence.tags):  # a tokens task: every word is one
            per_type[span.type] += 1
            by_length[length_bucket(span)] += 1
    return {
        "path": split.path,
        "scheme": split.scheme,
        "sentences": len(split.sentences),
        "tokens": split.n_tokens,
        "documents": split.n_documents,
        "entities": dict(sorted(per_type.items())),
        "entities_total": sum(per_type.values()),
        "entity_lengths": {bucket: by_length[bucket] for bucket in LENGTH_BUCKETS},
        "warnings": len(split.warnings),
    }


def corpus_stats(corpus: Corpus) -> dict[str, dict[str, Any]]:
    """:func:`split_stats` for every split of ``corpus``, keyed by split name in file order."""
    return {name: split_stats(split, corpus.labels) for name, split in corpus.splits.items()}


def stats_table(stats: dict[str, dict[str, Any]], title: str = "") -> Table:
    """A rich table with one row per measure and one column per split."""
    splits = list(stats)
    table = Table(title=title or None, title_justify="left")
    table.add_column("")
    for split in splits:
        table.add_column(split, justify="right")
    labels = sorted({label for values in stats.values() for label in values["entities"]})

    def row(name: str, pick: Any, style: str | None = None) -> None:
        table.add_row(name, *[f"{pick(stats[split]):,}" for split in splits], style=style)

    row("sentences", lambda values: values["sentences"])
    row("tokens", lambda values: values["tokens"])
    row("documents", lambda values: values["documents"])
    table.add_section()
    for label in labels:
        row(f"{label}", lambda values, label=label: values["entities"].get(label, 0))
    row("entities", lambda values: values["entities_total"], style="bold")
    table.add_section()
    for bucket in LENGTH_BUCKETS:
        row(
            f"{bucket} word{'' if bucket == '1' else 's'}",
            lambda values, bucket=bucket: values["entity_lengths"][bucket],
        )
    table.add_section()
    table.add_row("scheme on disk", *[stats[split]["scheme"] for split in splits])
    if any(values["warnings"] for values in stats.values()):
        row("reader warnings", lambda values: values["warnings"], style="yellow")
    return table
