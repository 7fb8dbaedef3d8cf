"""spaCy ``DocBin`` files (``.spacy``) as corpora, and sentences as spaCy ``Doc`` objects (spaCy imported lazily:
``pip install 'lsfa[peers]'``). Used to read and write user data and by the spaCy peer."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from lsfa.data.conll import ConllFile
from lsfa.data.types import Sentence
from lsfa.errors import LsfaError

PLACEHOLDER_WORD = "_"


def require_spacy():
    """Import spaCy or say how to install it."""
    try:
        import spacy
    except ImportError as error:
        raise LsfaError("spaCy files and the spaCy peer need spaCy: pip install 'lsfa[peers]'") from error
    return spacy


def spacy_words(tokens: Sequence[str]) -> list[str]:
    """Words spaCy can hold as tokens: empty or whitespace pieces become ``_`` (tags stay one per word).

    spaCy treats whitespace tokens as spacing and refuses entities on them; the real corpora contain a
    few empty tokens (bc5cdr). Only spaCy sees the placeholder; scoring uses the original words.
    """
    return [re.sub(r"\s+", PLACEHOLDER_WORD, token.strip()) or PLACEHOLDER_WORD for token in tokens]


def sentences_to_docs(vocab, sentences: Sequence[Sentence], with_entities: bool = True) -> list:
    """One spaCy ``Doc`` per sentence, entities from the IOB2 tags (spaCy reads IOB strings directly)."""
    from spacy.tokens import Doc

    docs = []
    for sentence in sentences:
        words = spacy_words(sentence.tokens)
        ents = list(sentence.tags) if with_entities else None
        try:
            docs.append(Doc(vocab, words=words, spaces=[True] * len(words), ents=ents))
        except ValueError as error:
            where = f"line {sentence.line}" if sentence.line else "a sentence"
            raise LsfaError(f"spaCy peer: cannot convert {where}: {error}") from error
    return docs


def write_docbin(sentences: Sequence[Sentence], path: Path) -> int:
    """Write ``sentences`` as a spaCy training file; returns the number of words (for time per epoch)."""
    spacy = require_spacy()
    from spacy.tokens import DocBin

    docs = sentences_to_docs(spacy.blank("xx").vocab, sentences)
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=False).to_disk(path)
    return sum(len(doc) for doc in docs)


def doc_tags(doc) -> list[str]:
    """IOB2 tags of a tagged ``Doc``, built from its entity spans."""
    tags = ["O"] * len(doc)
    for ent in doc.ents:
        tags[ent.start] = f"B-{ent.label_}"
        for index in range(ent.start + 1, ent.end):
            tags[index] = f"I-{ent.label_}"
    return tags


def read_docbin(path: str | Path) -> ConllFile:
    """The documents of a ``.spacy`` file as IOB2 sentences: spaCy's tokens are the words, ``doc.ents`` the
    entities (one sentence per Doc)."""
    spacy = require_spacy()
    from spacy.tokens import DocBin

    path = Path(path)
    try:
        docs = list(DocBin().from_disk(path).get_docs(spacy.blank("xx").vocab))
    except (OSError, ValueError) as error:
        raise LsfaError(f"{path}: not a readable spaCy DocBin file ({error})") from None
    sentences = [Sentence([t.text for t in doc], doc_tags(doc), doc_id=k, line=k + 1) for k, doc in enumerate(docs)]
    return ConllFile(sentences, str(path), n_documents=len(sentences), has_docstart=False)
