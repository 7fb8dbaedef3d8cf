"""Shared set-up of the training speed checks: the tagger's tokenizer and labels, and encoded CoNLL rows."""

from pathlib import Path
from types import SimpleNamespace

from lsfa.data.corpora import load_corpus, load_split
from lsfa.data.encode import encode_sentences
from lsfa.models.catalogue import resolve_model
from lsfa.models.classifier import load_tokenizer
from lsfa.models.saving import load_tagger
from lsfa.training.runner import inside_map

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
