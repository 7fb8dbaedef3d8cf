"""``nlp.add_pipe("lsfa_ner", config={"model": "runs/x/model"})``: an lsfa tagger as a spaCy component.

spaCy's tokens are the words the tagger sees (so entities always fall on spaCy tokens), ``doc.ents`` gets the
entities and ``doc.spans["lsfa"]`` the same spans with their calibrated confidence (``SpanGroup.attrs
["scores"]``); ``nlp.pipe`` tags ``batch_size`` docs per model call. ``nlp.to_disk`` copies the tagger folder into
the pipeline, so ``spacy.load`` needs nothing else. Registered through the ``spacy_factories`` entry point when
lsfa is installed; importing this module registers it too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from spacy.language import Language
from spacy.tokens import Doc, Span, SpanGroup

from lsfa.errors import LsfaError
from lsfa.inference.tagger import Tagger, resolve_tagger_folder

SPANS_KEY = "lsfa"
TAGGER_DIR = "tagger"


class LsfaNer:
    """The component: a loaded :class:`~lsfa.inference.tagger.Tagger` applied to spaCy docs."""

    def __init__(self, name: str, model: str | None, batch_size: int, threshold: float | None, precision: str) -> None:
        self.name = name
        self.batch_size = batch_size
        self.settings = {"threshold": threshold, "precision": precision}
        self.folder = resolve_tagger_folder(model) if model else None
        self.tagger = Tagger.load(self.folder, **self.settings) if self.folder else None

    def __call__(self, doc: Doc) -> Doc:
        return next(self.pipe([doc], batch_size=1))

    def pipe(self, docs: Iterable[Doc], batch_size: int | None = None) -> Iterator[Doc]:
        size = min(batch_size or self.batch_size, self.batch_size)  # nlp.pipe's batch, capped by the component's
        chunk: list[Doc] = []
        for doc in docs:
            chunk.append(doc)
            if len(chunk) >= size:
                yield from self._tag(chunk)
                chunk = []
        if chunk:
            yield from self._tag(chunk)

    def _tag(self, docs: list[Doc]) -> list[Doc]:
        if self.tagger is None:
            raise LsfaError("lsfa_ner has no tagger: give config={'model': 'path/to/tagger'}")
        predicted = self.tagger.predict_words([[token.text for token in doc] for doc in docs])
        for doc, found in zip(docs, self.tagger.entity_spans(predicted), strict=True):
            spans = [Span(doc, start, end, label=label) for start, end, label, _ in found]
            doc.ents = spans
            scores = [score for *_, score in found]
            doc.spans[SPANS_KEY] = SpanGroup(doc, name=SPANS_KEY, spans=spans, attrs={"scores": scores})
        return docs

    def to_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> None:
        """Copy the tagger folder into the pipeline folder, so the saved pipeline is self-contained."""
        if self.folder is None:
            return
        target = Path(path) / TAGGER_DIR
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.resolve() != self.folder.resolve():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.folder, target)

    def from_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> LsfaNer:
        folder = Path(path) / TAGGER_DIR
        if folder.is_dir():
            self.folder = folder
            self.tagger = Tagger.load(folder, **self.settings)
        return self


@Language.factory(
    "lsfa_ner",
    default_config={"model": None, "batch_size": 32, "threshold": None, "precision": "auto"},
    assigns=["doc.ents", "doc.spans"],
)
def make_lsfa_ner(
    nlp: Language, name: str, model: str | None, batch_size: int, threshold: float | None, precision: str
) -> LsfaNer:
    """spaCy factory of :class:`LsfaNer` (``model``: a tagger folder or training run folder)."""
    return LsfaNer(name, model, batch_size, threshold, precision)
