"""The shared corpora read exactly as /work/shared/data/README.md describes them (needs LSFA_DATA_DIR)."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import pytest

from lsfa.data.conll import DOCSTART, write_conll
from lsfa.data.corpora import CORPORA, Corpus, load_corpus
from lsfa.data.stats import corpus_stats

pytestmark = pytest.mark.integration

# Numbers from the data README: sentences per split and entity mentions per type per split.
EXPECTED = {
    "conll2003": {
        "sentences": {"train": 14041, "dev": 3250, "test": 3453},
        "entities": {
            "train": {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600},
            "dev": {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842},
            "test": {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617},
        },
    },
    "bc5cdr": {
        "sentences": {"train": 5228, "dev": 5330, "test": 5865},
        "entities": {
            "train": {"Chemical": 5203, "Disease": 4182},
            "dev": {"Chemical": 5347, "Disease": 4244},
            "test": {"Chemical": 5385, "Disease": 4424},
        },
    },
    "bc5cdr_mtl": {
        "sentences": {"train": 4560, "dev": 4581, "test": 4797},
        "entities": {
            "train": {"Chemical": 5203, "Disease": 4182},
            "dev": {"Chemical": 5347, "Disease": 4246},
            "test": {"Chemical": 5385, "Disease": 4424},
        },
    },
}
EMPTY_TOKEN_LINES = [5373, 5374, 22813, 22848]


@cache
def _load(name: str, data_dir: Path) -> Corpus:
    """Each corpus is read once per session: they are large for a 2-core machine."""
    return load_corpus(name, data_dir=data_dir)


def word_lines(path: Path) -> int:
    """Lines holding a word: neither blank nor -DOCSTART-."""
    with open(path, encoding="utf-8") as stream:
        return sum(1 for line in stream if line.strip() and not line.startswith(DOCSTART))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_sentence_and_entity_counts_match_the_readme(name: str, shared_data_dir: Path) -> None:
    stats = corpus_stats(_load(name, shared_data_dir))
    assert {split: values["sentences"] for split, values in stats.items()} == EXPECTED[name]["sentences"]
    assert {split: values["entities"] for split, values in stats.items()} == EXPECTED[name]["entities"]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_no_word_is_lost(name: str, shared_data_dir: Path) -> None:
    corpus = _load(name, shared_data_dir)
    for split, conll in corpus.splits.items():
        assert conll.n_tokens == word_lines(shared_data_dir / CORPORA[name].files[split]), split
        assert conll.scheme == "IOB2"


def test_conll2003_documents_follow_docstart_lines(shared_data_dir: Path) -> None:
    corpus = _load("conll2003", shared_data_dir)
    assert {split: conll.n_documents for split, conll in corpus.splits.items()} == {
        "train": 946,
        "dev": 216,
        "test": 231,
    }
    assert corpus.label_list() == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_bc5cdr_empty_tokens_are_kept_and_reported(shared_data_dir: Path) -> None:
    train = _load("bc5cdr", shared_data_dir)["train"]
    path = shared_data_dir / "bc5cdr" / "train.txt"
    assert train.warnings == [f"{path}:{line}: empty token kept as ''" for line in EMPTY_TOKEN_LINES]
    found = {}
    for sentence in train.sentences:
        for index, token in enumerate(sentence.tokens):
            if token == "":
                found[sentence.line + index] = sentence.tags[index]
    assert found == {5373: "I-Disease", 5374: "I-Disease", 22813: "I-Chemical", 22848: "I-Chemical"}
    assert all(not split.warnings for split in _load("bc5cdr", shared_data_dir).splits.values() if split is not train)


@pytest.mark.parametrize(("name", "split"), [("conll2003", "dev"), ("bc5cdr", "train"), ("bc5cdr_mtl", "test")])
def test_writing_back_reproduces_the_file(name: str, split: str, shared_data_dir: Path) -> None:
    conll = _load(name, shared_data_dir)[split]
    stream = io.StringIO()
    write_conll(conll.sentences, stream, sep=conll.sep, docstart=conll.has_docstart)
    original = (shared_data_dir / CORPORA[name].files[split]).read_text(encoding="utf-8")
    assert stream.getvalue().rstrip("\n") == original.rstrip("\n")
