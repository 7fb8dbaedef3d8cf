"""Tiny saved taggers for the prediction tests, built in about a second without training.

``random``: a tiny llama with a fresh head, untrained; its predictions are arbitrary but deterministic,
good for mechanics (round trips, batching) where attention mixes context as in a real model.

``rule``: the same tiny llama with weights set by hand so that it tags by a rule, whatever the context:
a word that starts with ``B`` gets ``B-PER``, one that starts with ``C`` gets ``I-PER``, everything else
``O``. The attention and MLP outputs are zeroed (each position's hidden state is then its own token
embedding), one embedding dimension marks each trigger token, and the head reads those dimensions. So
"Bob Carter" is one PER entity wherever it stands, e.g. right at a window border.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lsfa.data.align import encode_words
from lsfa.models.classifier import apply_lora, build_token_classifier, load_tokenizer
from lsfa.models.saving import TaggerMeta, save_tagger
from tests.tiny import tiny_decoder_dir

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
B_WORDS = ["Bob", "Berlin", "Bill"]
C_WORDS = ["Carter", "Cole"]
FILLERS = ["the", "in", "a", "dog", "said", "cat", ".", ",", "sat", "on", "mat", "and"]


def random_model(base: Path, max_length: int = 64, lora: bool = False):
    """An untrained in-memory tagger ``(model, tokenizer, meta)``: full weights, or LoRA over ``base``."""
    torch.manual_seed(0)
    model = build_token_classifier(base, LABELS, "full")
    if lora:
        model = apply_lora(model, r=4, alpha=8, dropout=0.0)
        with torch.no_grad():  # give the adapters a non-zero effect so merging is actually exercised
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.05)
    weights = "lora" if lora else "full"
    meta = TaggerMeta(base_model=str(base), model_type="llama", labels=LABELS, weights=weights, max_length=max_length)
    return model.eval(), load_tokenizer(base), meta


def build_random(base: Path, folder: Path, max_length: int = 64, lora: bool = False) -> Path:
    """Save :func:`random_model` as a tagger folder."""
    model, tokenizer, meta = random_model(base, max_length, lora)
    return save_tagger(model, tokenizer, folder, meta)


def label_token_ids(tokenizer, word: str) -> set[int]:
    """Ids of the sub-token that carries ``word``'s label, inside a text and at the start of one."""
    inside = encode_words(tokenizer, ["x", word], add_special_tokens=False)
    first = encode_words(tokenizer, [word], add_special_tokens=False)
    return {inside.input_ids[inside.first_subtoken[1]], first.input_ids[first.first_subtoken[0]]}


def build_rule(base: Path, folder: Path, max_length: int = 64) -> Path:
    """The hand-set tagger described in the module docstring."""
    tokenizer = load_tokenizer(base)
    b_ids = set().union(*(label_token_ids(tokenizer, word) for word in B_WORDS))
    c_ids = set().union(*(label_token_ids(tokenizer, word) for word in C_WORDS))
    filler_ids = set().union(*(label_token_ids(tokenizer, word) for word in FILLERS))
    assert not (b_ids & c_ids) and not (filler_ids & (b_ids | c_ids)), "tiny tokenizer changed: pick other words"
    torch.manual_seed(0)
    model = build_token_classifier(base, LABELS, "full")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embeddings = model.model.embed_tokens.weight
        embeddings[:, :2] = 0.0
        embeddings[sorted(b_ids), 0] = 10.0
        embeddings[sorted(c_ids), 1] = 10.0
        model.score.weight.zero_()
        model.score.bias.copy_(torch.tensor([0.0, -1.0, -1.0, -1.0, -1.0]))
        model.score.weight[LABELS.index("B-PER"), 0] = 5.0
        model.score.weight[LABELS.index("I-PER"), 1] = 5.0
    meta = TaggerMeta(base_model=str(base), model_type="llama", labels=LABELS, weights="full", max_length=max_length)
    return save_tagger(model.eval(), tokenizer, folder, meta)


def build_all(root: Path) -> dict[str, Path]:
    """The base model and the three taggers under ``root``."""
    base = tiny_decoder_dir(root / "base", "llama")
    return {
        "base": base,
        "random": build_random(base, root / "random"),
        "lora": build_random(base, root / "lora", lora=True),
        "rule": build_rule(base, root / "rule"),
    }


def local_client(app, **options):
    """A test client for a server app, sending ``Host: 127.0.0.1`` (the app answers only loopback names; the
    test client's own ``testserver`` is refused like any other foreign host)."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1", **options)
