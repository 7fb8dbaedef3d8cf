"""Named corpora and loading a corpus from a name, a folder or a file.

A corpus is a set of splits (``train``/``dev``/``test``), each a file (or folder) in any format of
:mod:`lsfa.data.formats`, chosen by its suffix.
Every split is normalised to IOB2 in memory, because labels and metrics are defined on IOB2; the
scheme of the file on disk stays recorded in ``ConllFile.scheme``.

Names resolve under the data directory (``data_dir`` argument, else ``LSFA_DATA_DIR``). Downloading from
the Hugging Face hub is possible only when asked for (``allow_download=True``) and needs the optional
``datasets`` package; tests and the default CLI never download.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lsfa import settings
from lsfa.data import schemes
from lsfa.data.conll import DOCSTART, TOKENS, ConllFile
from lsfa.data.formats import format_of, read_file, split_suffixes
from lsfa.data.jsonl import SpanOptions
from lsfa.data.types import Sentence
from lsfa.errors import LsfaError

SPLITS = ("train", "dev", "test")
# Other names corpora use for the standard splits.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "devel": "dev",
    "valid": "dev",
    "validation": "dev",
    "test": "test",
}


@dataclass(frozen=True)
class CorpusSpec:
    """Where a named corpus lives under the data directory, and its hub copy (if any)."""

    name: str
    files: dict[str, str]
    hub_id: str | None = None
    description: str = ""
    tag_column: int = -1
    task: str = "spans"


CORPORA: dict[str, CorpusSpec] = {
    spec.name: spec
    for spec in (
        CorpusSpec(
            "conll2003",
            {split: f"conll2003/{split}.txt" for split in SPLITS},
            hub_id="eriktks/conll2003",
            description="CoNLL-2003 English (PER, ORG, LOC, MISC)",
        ),
        CorpusSpec(
            "conll2003_chunk",
            {split: f"conll2003/{split}.txt" for split in SPLITS},
            description="CoNLL-2003 English syntactic chunks (column 3, IOB): NP, VP, PP, ...",
            tag_column=2,
        ),
        CorpusSpec(
            "conll2003_pos",
            {split: f"conll2003/{split}.txt" for split in SPLITS},
            description="CoNLL-2003 English part-of-speech tags (column 2, Penn Treebank): a tag per word",
            tag_column=1,
            task="tokens",
        ),
        CorpusSpec(
            "bc5cdr",
            {split: f"bc5cdr/{split}.txt" for split in SPLITS},
            hub_id="tner/bc5cdr",
            description="BC5CDR, T-NER split (Chemical, Disease)",
        ),
        CorpusSpec(
            "bc5cdr_mtl",
            {split: f"bc5cdr_mtl/{split}.tsv" for split in SPLITS},
            description="BC5CDR, MTL-Bioinformatics-2016 / BioBERT version (Chemical, Disease)",
        ),
    )
}


@dataclass
class Corpus:
    """The splits of one corpus, tags in IOB2."""

    name: str
    splits: dict[str, ConllFile]
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.labels:
            tags = (tag for split in self.splits.values() for s in split.sentences for tag in s.tags)
            self.labels = sorted(set(tags) if self.task == "tokens" else schemes.entity_types(tags))

    @property
    def task(self) -> str:
        """``spans`` (entities or chunks in IOB2) or ``tokens`` (a flat tag per word)."""
        return "tokens" if any(split.scheme == TOKENS for split in self.splits.values()) else "spans"

    def label_list(self) -> list[str]:
        """The model's labels in a stable order. Spans: ``O``, then ``B-X``, ``I-X`` for each type in sorted
        order; tokens: the tags in sorted order (those of the splits read: train and dev when training).

        The order is what model label ids are built from, so it must not depend on which split was read.
        """
        if self.task == "tokens":
            return list(self.labels)
        return ["O", *[f"{prefix}-{label}" for label in self.labels for prefix in ("B", "I")]]

    @property
    def warnings(self) -> list[str]:
        """Reader warnings of all splits."""
        return [warning for split in self.splits.values() for warning in split.warnings]

    def __getitem__(self, split: str) -> ConllFile:
        if split not in self.splits:
            raise LsfaError(f"corpus {self.name!r} has no split {split!r}; it has {', '.join(self.splits)}")
        return self.splits[split]


def load_corpus(
    name_or_path: str | Path,
    data_dir: str | Path | None = None,
    splits: list[str] | tuple[str, ...] | None = None,
    allow_download: bool = False,
    span_options: SpanOptions | None = None,
    tag_column: int | None = None,
    task: str | None = None,
) -> Corpus:
    """Load a corpus by registered name, folder of split files, or single file.

    Resolution order: a registered name found under ``data_dir`` (else ``LSFA_DATA_DIR``); a folder
    (also tried relative to the data directory) holding ``train``/``dev``/``test`` files; a single file,
    which becomes the split its name says (``test.txt`` -> ``test``) or else ``train``. ``splits`` limits
    which splits are read. Split files may be CoNLL, span-annotated JSONL (``span_options`` say what to do with
    spans off word boundaries or overlapping) or spaCy DocBin files, mixed freely. Raises :class:`LsfaError` with
    what to set when nothing is found. ``tag_column`` and ``task`` choose the CoNLL column and what it holds
    (default: the named corpus's own, else the last column, detected).
    """
    root = Path(data_dir).expanduser() if data_dir is not None else settings.data_dir()
    name = str(name_or_path)
    spec = CORPORA.get(name)
    if spec is not None and root is not None:
        files = _select({split: root / rel for split, rel in spec.files.items()}, splits, spec.name)
        if all(path.is_file() for path in files.values()):
            column = spec.tag_column if tag_column is None else tag_column
            return _read_files(spec.name, files, span_options, column, task or spec.task)
    path = _existing_path(Path(name).expanduser(), root)
    if path is not None and path.is_dir():
        return _read_files(path.name, _select(_split_files_in(path), splits, str(path)), span_options, tag_column, task)
    if path is not None:
        return _read_files(
            path.stem, _select({_split_of_file(path): path}, splits, str(path)), span_options, tag_column, task
        )
    if spec is not None:
        if allow_download:
            return _download(spec, splits)
        raise LsfaError(_missing_corpus_message(spec, root))
    known = ", ".join(CORPORA)
    raise LsfaError(f"no corpus {name!r}: not a registered name ({known}) and no such file or folder")


def load_split(
    name_or_path: str | Path,
    split: str,
    data_dir: str | Path | None = None,
    span_options: SpanOptions | None = None,
    tag_column: int | None = None,
    task: str | None = None,
) -> ConllFile:
    """One split of a corpus (see :func:`load_corpus`), e.g. ``load_split("conll2003", "test")``."""
    split = SPLIT_ALIASES.get(split.lower(), split)
    corpus = load_corpus(name_or_path, data_dir, [split], span_options=span_options, tag_column=tag_column, task=task)
    return corpus[split]


def _existing_path(path: Path, root: Path | None) -> Path | None:
    """``path`` if it exists, else the same relative path under the data directory, else None."""
    if path.exists():
        return path
    if root is not None and not path.is_absolute() and (root / path).exists():
        return root / path
    return None


def _split_of_file(path: Path) -> str:
    """The split a file's name stands for (``valid.txt`` -> ``dev``); ``train`` for other names."""
    return SPLIT_ALIASES.get(path.stem.lower(), "train")


def _split_files_in(folder: Path) -> dict[str, Path]:
    """The split files of a folder, refusing two candidates for one split (``train.txt``, ``train.tsv``)."""
    found: dict[str, Path] = {}
    for candidate in sorted(folder.iterdir()):
        split = SPLIT_ALIASES.get(candidate.stem.lower() if candidate.is_file() else candidate.name.lower())
        if split is None or not _is_split(candidate):
            continue
        if split in found:
            raise LsfaError(f"{folder}: both {found[split].name} and {candidate.name} look like the {split} split")
        found[split] = candidate
    if not found:
        suffixes = ", ".join(split_suffixes())
        raise LsfaError(f"{folder}: no split files found (expected train/dev/test with suffix {suffixes})")
    return dict(sorted(found.items(), key=lambda item: SPLITS.index(item[0])))


def _select(files: dict[str, Path], wanted: list[str] | tuple[str, ...] | None, where: str) -> dict[str, Path]:
    """The requested subset of ``files``, with a clear error for a split that is not there."""
    if wanted is None:
        return files
    selected: dict[str, Path] = {}
    for split in wanted:
        split = SPLIT_ALIASES.get(split.lower(), split)
        if split not in files:
            raise LsfaError(f"{where}: no {split!r} split (found: {', '.join(files)})")
        selected[split] = files[split]
    return selected


def _read_files(
    name: str,
    files: dict[str, Path],
    span_options: SpanOptions | None = None,
    tag_column: int | None = None,
    task: str | None = None,
) -> Corpus:
    """Read each split file, normalising span tags to IOB2."""
    return Corpus(
        name=name,
        splits={split: read_file(path, span_options, tag_column, task) for split, path in files.items()},
    )


def _is_split(candidate: Path) -> bool:
    """A file whose suffix names a format (not the companion of another file, as BRAT's ``.txt`` of a ``.ann``),
    or a folder of a folder format (BRAT documents)."""
    data_format = format_of(candidate)
    if data_format is None or (candidate.is_dir() and not data_format.folders):
        return False
    return candidate.is_dir() or candidate.suffix.lower() in data_format.suffixes


def _missing_corpus_message(spec: CorpusSpec, root: Path | None) -> str:
    """Tell the user where the files were expected and what to set."""
    expected = ", ".join(spec.files.values())
    if root is None:
        return (
            f"corpus {spec.name!r} needs its files ({expected}) under a data directory: "
            "set LSFA_DATA_DIR (or pass --data-dir) to the folder that holds them"
        )
    missing = [rel for rel in spec.files.values() if not (root / rel).is_file()]
    return (
        f"corpus {spec.name!r} not found under {root} (missing {', '.join(missing)}): "
        "set LSFA_DATA_DIR (or pass --data-dir) to the folder that holds it"
    )


# --- optional download from the Hugging Face hub (online users only; never used by tests) -------------

# tner/bc5cdr stores tag ids without names; this is the mapping published with that dataset.
_HUB_FALLBACK_LABELS = {
    "tner/bc5cdr": ["O", "B-Chemical", "B-Disease", "I-Disease", "I-Chemical"],
    "eriktks/conll2003": ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"],
}
_HUB_SPLITS = {"train": "train", "validation": "dev", "test": "test"}


def _download(spec: CorpusSpec, splits: list[str] | tuple[str, ...] | None) -> Corpus:
    """Load a named corpus from the Hugging Face hub with the optional ``datasets`` package."""
    if spec.hub_id is None:
        raise LsfaError(f"corpus {spec.name!r} has no hub copy; put its files under LSFA_DATA_DIR")
    try:
        import datasets  # optional; not a dependency of lsfa
    except ImportError:
        raise LsfaError(
            f"downloading {spec.hub_id} needs the 'datasets' package (pip install datasets); "
            "or set LSFA_DATA_DIR to a folder with the corpus files"
        ) from None
    try:
        dataset_dict = datasets.load_dataset(spec.hub_id)
    except Exception as error:  # network, auth and format errors all end the same way for the user
        raise LsfaError(f"could not download {spec.hub_id}: {error}") from None
    wanted = {SPLIT_ALIASES.get(split.lower(), split) for split in splits} if splits else set(SPLITS)
    loaded: dict[str, ConllFile] = {}
    for hub_split, split in _HUB_SPLITS.items():
        if split in wanted and hub_split in dataset_dict:
            loaded[split] = _hub_split_to_file(dataset_dict[hub_split], spec.hub_id, hub_split)
    if not loaded:
        raise LsfaError(f"{spec.hub_id} has none of the splits {sorted(wanted)}")
    return Corpus(name=spec.name, splits=loaded)


def _hub_split_to_file(split_data: object, hub_id: str, hub_split: str) -> ConllFile:
    """Turn one hub split (``tokens`` + integer ``ner_tags``/``tags``) into a ConllFile in IOB2."""
    column = "ner_tags" if "ner_tags" in split_data.column_names else "tags"  # type: ignore[attr-defined]
    feature = split_data.features[column]  # type: ignore[attr-defined]
    names = getattr(getattr(feature, "feature", None), "names", None) or _HUB_FALLBACK_LABELS[hub_id]
    sentences: list[Sentence] = []
    doc_id = 0
    has_docstart = False
    for row in split_data:  # type: ignore[attr-defined]
        tokens = list(row["tokens"])
        if tokens == [DOCSTART]:  # eriktks/conll2003 keeps document boundaries as one-word rows
            has_docstart = True
            doc_id += 1 if sentences and sentences[-1].doc_id == doc_id else 0
        elif tokens:
            tags = [names[tag_id] for tag_id in row[column]]
            sentences.append(Sentence(tokens=tokens, tags=tags, doc_id=doc_id))
    scheme = schemes.detect_scheme(sentence.tags for sentence in sentences)
    for sentence in sentences:
        sentence.tags = schemes.convert(sentence.tags, scheme, schemes.IOB2)
    return ConllFile(
        sentences=sentences,
        path=f"hf://{hub_id}:{hub_split}",
        n_documents=len({sentence.doc_id for sentence in sentences}),
        has_docstart=has_docstart,
        scheme=scheme,
        tag_scheme=schemes.IOB2,
    )
