"""``nlp.add_pipe("lsfa_ner", config={"model": "runs/x/model"})``: an lsfa tagger as a spaCy component.

spaCy's tokens are the words the tagger sees (so entities always fall on spaCy tokens), ``doc.ents`` gets the
entities and ``doc.spans["lsfa"]`` the same spans with their calibrated confidence (``SpanGroup.attrs
["scores"]``); ``nlp.pipe`` tags ``batch_size`` docs per model call. ``nlp.to_disk`` copies the tagger folder into
the pipeline and saves ``model = null`` in its ``config.cfg``, so ``spacy.load`` reads the copy only (once, in
``from_disk``) and needs nothing else, not even the original folder. The tagger is loaded on first use, so a
pipeline saved before that, whose config still names a folder since moved, loads too. Registered through the
``spacy_factories`` entry point when lsfa is installed; importing this module registers it too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from spacy.language import Language
from spacy.tokens import Doc, Span, SpanGroup

from lsfa.errors import LsfaError
from lsfa.inference.options import InferenceOptions
from lsfa.inference.tagger import Tagger, resolve_tagger_folder

SPANS_KEY = "lsfa"
TAGGER_DIR = "tagger"


class LsfaNer:
    """The component: a loaded :class:`~lsfa.inference.tagger.Tagger` applied to spaCy docs."""

    def __init__(self, name: str, model: str | None, batch_size: int, threshold: float | None, precision: str) -> None:
        self.name = name
        self.batch_size = batch_size
        self.threshold = InferenceOptions.of(threshold=threshold).threshold  # checked now, passed on each call
        self.settings = {"precision": precision}
        self.model = model  # loaded on first use: spacy.load gives the pipeline's own copy in from_disk first
        self.folder: Path | None = None
        self.tagger: Tagger | None = None

    def _loaded(self) -> Tagger:
        """The tagger, loaded from ``model`` the first time it is needed."""
        if self.tagger is None and self.model:
            self.folder = resolve_tagger_folder(self.model)
            self.tagger = Tagger.load(self.folder, **self.settings)
        if self.tagger is None:
            raise LsfaError("lsfa_ner has no tagger: give config={'model': 'path/to/tagger'}")
        return self.tagger

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
        tagger = self._loaded()
        predicted = tagger.predict_words([[token.text for token in doc] for doc in docs])
        per_call = {} if self.threshold is None else {"threshold": self.threshold}
        for doc, found in zip(docs, tagger.entity_spans(predicted, **per_call), strict=True):
            spans = [Span(doc, start, end, label=label) for start, end, label, _ in found]
            doc.ents = spans
            scores = [score for *_, score in found]
            doc.spans[SPANS_KEY] = SpanGroup(doc, name=SPANS_KEY, spans=spans, attrs={"scores": scores})
        return docs

    def to_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> None:
        """Copy the tagger folder into the pipeline folder and drop the original path from its config, so the
        saved pipeline is self-contained."""
        if self.folder is None and self.model:
            self.folder = resolve_tagger_folder(self.model)
        if self.folder is None:
            return
        target = Path(path) / TAGGER_DIR
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.resolve() != self.folder.resolve():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.folder, target)
        self._forget_model_path(Path(path).parent / "config.cfg")

    def _forget_model_path(self, config_file: Path) -> None:
        """Set this component's ``model`` to null in the pipeline's ``config.cfg`` (``nlp.to_disk`` writes the
        config before the components): the copy in the pipeline is the tagger, and the original folder may move
        or vanish. Variables (``${paths.train}``) are kept as written."""
        from thinc.api import Config

        if not config_file.is_file():
            return
        config = Config().from_disk(config_file, interpolate=False)
        component = config.get("components", {}).get(self.name)
        if component and component.get("factory") == "lsfa_ner" and component.get("model") is not None:
            component["model"] = None
            config.to_disk(config_file)

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
