"""Loading corpora by name, folder or file, and normalising their tags to IOB2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lsfa.data.corpora import CORPORA, load_corpus, load_split
from lsfa.errors import LsfaError

IOB1_TEXT = "Peter I-PER\nBlackburn I-PER\nin O\nBonn I-LOC\n\nA I-PER\nB B-PER\n"


def make_named_corpus(root: Path, name: str = "conll2003") -> Path:
    """Tiny stand-in files for a registered corpus under ``root``."""
    for split, relative in CORPORA[name].files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        sep = "\t" if path.suffix == ".tsv" else " "
        path.write_text(f"{split}{sep}B-PER\nword{sep}O\n\nx{sep}B-LOC\n", encoding="utf-8")
    return root


def test_named_corpus_from_data_dir_argument(tmp_path: Path) -> None:
    corpus = load_corpus("conll2003", data_dir=make_named_corpus(tmp_path))
    assert corpus.name == "conll2003"
    assert list(corpus.splits) == ["train", "dev", "test"]
    assert corpus["dev"].sentences[0].tokens == ["dev", "word"]


def test_named_corpus_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSFA_DATA_DIR", str(make_named_corpus(tmp_path, "bc5cdr_mtl")))
    corpus = load_corpus("bc5cdr_mtl", splits=["test"])
    assert list(corpus.splits) == ["test"]
    assert corpus["test"].sep == "\t"


def test_missing_named_corpus_says_to_set_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LSFA_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LsfaError, match="set LSFA_DATA_DIR"):
        load_corpus("bc5cdr")
    with pytest.raises(LsfaError, match=r"not found under .*missing bc5cdr/train.txt"):
        load_corpus("bc5cdr", data_dir=tmp_path)


def test_download_without_datasets_package_fails_clearly(tmp_path: Path) -> None:
    if importlib.util.find_spec("datasets") is not None:
        pytest.skip("the datasets package is installed; this test must not reach the network")
    with pytest.raises(LsfaError, match="needs the 'datasets' package"):
        load_corpus("conll2003", data_dir=tmp_path, allow_download=True)
    with pytest.raises(LsfaError, match="no hub copy"):
        load_corpus("bc5cdr_mtl", data_dir=tmp_path, allow_download=True)


def test_unknown_name_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LsfaError, match="no corpus 'mystery'"):
        load_corpus("mystery", data_dir=tmp_path)


def test_folder_with_alias_split_names_and_suffixes(tmp_path: Path) -> None:
    (tmp_path / "train.conll").write_text("a B-X\n", encoding="utf-8")
    (tmp_path / "valid.txt").write_text("b O\n", encoding="utf-8")
    (tmp_path / "test.iob").write_text("c B-Y\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("not a split\n", encoding="utf-8")
    corpus = load_corpus(tmp_path)
    assert list(corpus.splits) == ["train", "dev", "test"]
    assert corpus.labels == ["X", "Y"]
    assert corpus.name == tmp_path.name


def test_folder_relative_to_data_dir_and_devel_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "devel.tsv").write_text("b\tO\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path.parent)
    corpus = load_corpus("mine", data_dir=tmp_path)
    assert list(corpus.splits) == ["dev"]


def test_folder_with_two_files_for_one_split_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a O\n", encoding="utf-8")
    (tmp_path / "train.tsv").write_text("a\tO\n", encoding="utf-8")
    with pytest.raises(LsfaError, match=r"both train\.tsv and train\.txt"):
        load_corpus(tmp_path)


def test_folder_without_split_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a O\n", encoding="utf-8")
    with pytest.raises(LsfaError, match="no split files"):
        load_corpus(tmp_path)


def test_single_file_becomes_the_split_its_name_says(tmp_path: Path) -> None:
    (tmp_path / "test.txt").write_text("a O\n", encoding="utf-8")
    (tmp_path / "my_data.txt").write_text("a O\n", encoding="utf-8")
    assert list(load_corpus(tmp_path / "test.txt").splits) == ["test"]
    assert list(load_corpus(tmp_path / "my_data.txt").splits) == ["train"]
    assert load_split(tmp_path / "test.txt", "test").sentences[0].tokens == ["a"]


def test_unknown_split_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a O\n", encoding="utf-8")
    with pytest.raises(LsfaError, match="no 'test' split"):
        load_split(tmp_path, "test")
    with pytest.raises(LsfaError, match="has no split 'dev'"):
        load_corpus(tmp_path)["dev"]


def test_tags_are_normalised_to_iob2_and_source_scheme_kept(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text(IOB1_TEXT, encoding="utf-8")
    split = load_corpus(tmp_path)["train"]
    assert split.scheme == "IOB1"
    assert split.tag_scheme == "IOB2"
    assert [s.tags for s in split.sentences] == [["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "B-PER"]]


def test_bioes_corpus_is_normalised_to_iob2(tmp_path: Path) -> None:
    (tmp_path / "dev.txt").write_text("a S-X\nb B-Y\nc E-Y\n", encoding="utf-8")
    split = load_split(tmp_path, "dev")
    assert (split.scheme, split.sentences[0].tags) == ("BIOES", ["B-X", "B-Y", "I-Y"])


def test_label_list_is_stable_o_first_then_b_i_per_sorted_type(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a B-ORG\nb B-LOC\n", encoding="utf-8")
    (tmp_path / "test.txt").write_text("a B-PER\n", encoding="utf-8")
    corpus = load_corpus(tmp_path)
    assert corpus.labels == ["LOC", "ORG", "PER"]
    assert corpus.label_list() == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
