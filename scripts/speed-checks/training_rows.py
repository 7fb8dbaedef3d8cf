"""Shared set-up of the training speed checks: the tagger's tokenizer and labels, and encoded CoNLL rows."""

from pathlib import Path
from types import SimpleNamespace

from lsfa.data.corpora import load_corpus, load_split
from lsfa.data.encode import encode_sentences
from lsfa.models.catalogue import resolve_model
from lsfa.models.classifier import load_tokenizer
from lsfa.models.saving import load_tagger
from lsfa.training.dataset import inside_map

TAGGER = "runs/conll2003-lsfa-lora/model"


def tagger_meta():
    """The trained tagger's tokenizer and metadata when it is here, else the default model's with CoNLL-2003's
    labels and full attention (throughput does not depend on trained weights)."""
    if Path(TAGGER).is_dir():
        _, tokenizer, meta = load_tagger(TAGGER, merge=False)
        return tokenizer, meta
    base = resolve_model("smollm2-135m", auto_fetch=True)
    labels = ["O", *(f"{p}-{t}" for t in load_corpus("conll2003").labels for p in "BI")]
    return load_tokenizer(base), SimpleNamespace(base_model=str(base), labels=labels, attention="full")


def training_rows(count: int = 800):
    """The first ``count`` CoNLL-2003 test sentences encoded with gold labels (throughput only), the
    tokenizer and the tagger's metadata (base model, labels, attention)."""
    sentences = load_split("conll2003", "test").sentences[:count]
    tokenizer, meta = tagger_meta()
    label2id = {label: k for k, label in enumerate(meta.labels)}
    encoded = encode_sentences(
        tokenizer,
        [s.tokens for s in sentences],
        [[label2id[t] for t in s.tags] for s in sentences],
        max_length=512,
        inside_of=inside_map(meta.labels),
    )
    return encoded.examples, tokenizer, meta


def timed_rounds(variants, rows, pad_id: int, rounds: int, steps: int, device) -> None:
    """Two warm-up steps per variant, then ``rounds`` rounds of ``steps`` timed steps each, the variants' order
    reversed every other round (so drift on a busy machine hits all alike); prints tokens/s and s/step."""
    from lsfa.bench.training import train_step

    for variant in variants:
        for _ in range(2):
            train_step(variant, rows, pad_id, device)
        variant.seconds, variant.tokens, variant.steps = 0.0, 0, 0
    for round_index in range(rounds):
        for variant in variants if round_index % 2 == 0 else variants[::-1]:
            for _ in range(steps):
                train_step(variant, rows, pad_id, device)
    for variant in variants:
        speed, step = variant.tokens / variant.seconds, variant.seconds / variant.steps
        print(f"{variant.name}: {speed:.1f} tokens/s, {step:.3f} s/step")
