"""Shared set-up of the training speed checks: the tagger's tokenizer and labels, and encoded CoNLL rows."""

from lsfa.data.corpora import load_split
from lsfa.data.encode import encode_sentences
from lsfa.models.saving import load_tagger
from lsfa.training.runner import inside_map

TAGGER = "runs/conll2003-lsfa-lora/model"


def training_rows(count: int = 800):
    """The first ``count`` CoNLL-2003 test sentences encoded with gold labels (throughput only), the
    tokenizer and the tagger's metadata (base model, labels, attention)."""
    sentences = load_split("conll2003", "test").sentences[:count]
    _, tokenizer, meta = load_tagger(TAGGER, merge=False)
    label2id = {label: k for k, label in enumerate(meta.labels)}
    encoded = encode_sentences(
        tokenizer,
        [s.tokens for s in sentences],
        [[label2id[t] for t in s.tags] for s in sentences],
        max_length=512,
        inside_of=inside_map(meta.labels),
    )
    return encoded.examples, tokenizer, meta
