"""The training rows: a corpus's train and dev splits, encoded for the Trainer.

Kept apart from the run (:mod:`lsfa.training.runner`) because the IFT baseline, the spaCy peer and the bench
read and encode splits the same way without running a tagger's training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lsfa.data.align import IGNORE_INDEX
from lsfa.data.corpora import load_corpus
from lsfa.data.encode import EncodedSet, encode_sentences
from lsfa.data.jsonl import SpanOptions
from lsfa.data.types import Sentence
from lsfa.training.config import TrainConfig


@dataclass
class RowDataset(torch.utils.data.Dataset):
    """Encoded rows as the Trainer wants them: dicts of ``input_ids`` and ``labels``."""

    encoded: EncodedSet

    def __len__(self) -> int:
        return len(self.encoded.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        row = self.encoded.examples[index]
        return {"input_ids": row.input_ids, "labels": row.labels}


def label_ids_for(sentences: list[Sentence], label2id: dict[str, int]) -> list[list[int]]:
    """Tag ids per word; a tag unseen in training counts as ``O`` for the loss (gold tags stay intact), or is
    left out of the loss in a tokens task, which has no ``O``."""
    outside = label2id.get("O", IGNORE_INDEX)
    return [[label2id.get(tag, outside) for tag in sentence.tags] for sentence in sentences]


def inside_map(labels: list[str]) -> dict[int, int]:
    """``B-X`` id -> ``I-X`` id, for labelling continuation sub-tokens."""
    index = {label: k for k, label in enumerate(labels)}
    return {k: index.get("I-" + label[2:], k) for k, label in enumerate(labels) if label.startswith("B-")}


def encode_split(tokenizer, sentences: list[Sentence], labels: list[str], config: TrainConfig, train: bool):
    """Encode one split; training rows may label all sub-tokens, evaluation rows only first ones."""
    label2id = {label: k for k, label in enumerate(labels)}
    return encode_sentences(
        tokenizer,
        [s.tokens for s in sentences],
        label_ids_for(sentences, label2id),
        max_length=config.max_length,
        label_all_subtokens=config.label_all_subtokens and train,
        inside_of=inside_map(labels),
        documents=[s.doc_id for s in sentences],
        context=config.context,
    )


def sort_rows_by_length(encoded: EncodedSet) -> EncodedSet:
    """Evaluation rows shortest first, so batches pad little (metrics map rows back by their fields)."""
    rows = sorted(encoded.examples, key=lambda row: len(row.input_ids))
    return EncodedSet(rows, encoded.n_sentences, encoded.cut_words)


def load_training_data(config: TrainConfig):
    """Train and dev splits (never test: it is read once, after training) and the label list."""

    splits = [config.train_split, config.dev_split]
    corpus = load_corpus(
        config.corpus, data_dir=config.data_dir, splits=splits, span_options=span_options(config),
        tag_column=config.tag_column, task=None if config.task == "auto" else config.task,
    )  # fmt: skip
    train = corpus[config.train_split].sentences[: config.train_limit]
    dev = corpus[config.dev_split].sentences[: config.dev_limit]
    return corpus, train, dev, corpus.label_list()


def span_options(config: TrainConfig):
    """How span-annotated files are read for this run (``misaligned``, ``overlaps``)."""

    return SpanOptions(misaligned=config.misaligned, overlaps=config.overlaps)
