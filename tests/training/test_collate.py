"""Packed training batches: same loss and gradients as the padded batch, labels where their tokens are."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lsfa.data.align import IGNORE_INDEX
from lsfa.models.classifier import apply_lora, build_token_classifier, load_tokenizer
from lsfa.training.collate import PackingCollator, packing_collator
from tests.tiny import tiny_decoder_dir, tiny_encoder_dir
from tests.tolerances import assert_unchanged

LABELS = ["O", "B-PER", "I-PER", "B-LOC"]


@pytest.fixture(scope="module")
def decoder(tmp_path_factory) -> Path:
    return tiny_decoder_dir(tmp_path_factory.mktemp("collate") / "decoder", "llama")


def _features(seed: int = 0) -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(seed)
    features = []
    for length in (5, 11, 3, 8, 14, 2):
        ids = torch.randint(3, 200, (length,), generator=generator).tolist()
        labels = torch.randint(0, len(LABELS), (length,), generator=generator).tolist()
        labels[-1] = IGNORE_INDEX  # a sub-token that carries no label
        features.append({"input_ids": ids, "labels": labels})
    return features


def _padded(features, pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    labels = torch.full((len(features), width), IGNORE_INDEX)
    for row, feature in enumerate(features):
        n = len(feature["input_ids"])
        ids[row, :n], mask[row, :n], labels[row, :n] = (
            torch.tensor(feature["input_ids"]),
            1,
            torch.tensor(feature["labels"]),
        )
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_labels_land_on_their_tokens_and_none_is_lost():
    features = _features()
    batch = PackingCollator(pad_id=0, pack_tokens=16)(features)
    assert batch["input_ids"].shape[0] < len(features)  # several rows share a model row
    assert batch["input_ids"].shape[1] < 16 + max(len(f["input_ids"]) for f in features)
    pairs = sorted(
        (token, label)
        for row_ids, row_labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True)
        for token, label in zip(row_ids, row_labels, strict=True)
        if label != IGNORE_INDEX
    )
    expected = sorted(
        (token, label)
        for f in features
        for token, label in zip(f["input_ids"], f["labels"], strict=True)
        if label != IGNORE_INDEX
    )
    assert pairs == expected


@pytest.mark.parametrize("attention", ["full", "causal", "groups=2:01"])
def test_packed_batch_has_the_loss_and_gradients_of_the_padded_batch(decoder, attention):
    torch.manual_seed(0)
    model = apply_lora(build_token_classifier(decoder, LABELS, attention), r=4, alpha=8, dropout=0.0)
    model.eval()  # no dropout: the two batches must see the same function (gradients still flow)
    pad_id = load_tokenizer(decoder).pad_token_id
    collator, batching = packing_collator(model, pad_id, [len(f["input_ids"]) for f in _features()])
    assert collator is not None and batching.startswith("packed rows")
    assert collator.causal == (attention == "causal")
    losses, grads = [], []
    for inputs in (_padded(_features(), pad_id), PackingCollator(pad_id, 16, collator.causal)(_features())):
        model.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    # Packed and padded rows run through other shapes: equal up to fp32 reordering noise (tests/tolerances.py).
    assert_unchanged(losses[0], losses[1], "the loss")
    for padded, packed in zip(*grads, strict=True):
        assert_unchanged(padded, packed, "a gradient")


def test_encoders_are_not_packed(tmp_path):
    encoder = tiny_encoder_dir(tmp_path / "encoder")
    model = build_token_classifier(encoder, LABELS, "full")
    collator, why = packing_collator(model, 0, [5, 6])
    assert collator is None and "encoder" in why
