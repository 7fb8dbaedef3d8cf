"""Distillation (``lsfa distill``) on a tiny random llama teacher and student: the loss at its two ends (weight 0 is
plain training, a copy of the teacher at weight 1 and temperature 1 has zero loss), the teacher cache (read back
bit for bit, reused, invalidated), unlabelled text files, and one end-to-end CLI run."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import DataCollatorForTokenClassification

import lsfa.training.distill as distill
from lsfa.data.align import IGNORE_INDEX
from lsfa.data.corpora import load_corpus
from lsfa.errors import DataFormatError, LsfaError
from lsfa.inference.tagger import Tagger
from lsfa.models.classifier import build_token_classifier, load_tokenizer
from lsfa.models.saving import TaggerMeta, load_tagger, read_meta, save_tagger
from lsfa.training.collate import PackingCollator
from lsfa.training.config import load_config
from lsfa.training.dataset import encode_split
from tests.tiny import tiny_decoder_dir
from tests.training.synthetic import write_synthetic_corpus

TIGHT = 1e-6


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("distill")


@pytest.fixture(scope="module")
def base(workspace: Path) -> Path:
    return tiny_decoder_dir(workspace / "base", "llama")


@pytest.fixture(scope="module")
def corpus(workspace: Path) -> Path:
    return write_synthetic_corpus(workspace / "corpus", train=24, dev=8, test=8)


@pytest.fixture(scope="module")
def train_sentences(corpus: Path):
    return load_corpus(str(corpus), splits=["train"])["train"].sentences


def save_random_tagger(base: Path, folder: Path, labels: list[str], seed: int) -> Path:
    """An untrained full-weights tagger (a fresh head over the tiny llama): arbitrary but fixed distributions."""
    torch.manual_seed(seed)
    model = build_token_classifier(base, labels, "full")
    meta = TaggerMeta(base_model=str(base), model_type="llama", labels=labels, weights="full", max_length=64)
    return save_tagger(model.eval(), load_tokenizer(base), folder, meta)


@pytest.fixture(scope="module")
def teacher(workspace: Path, base: Path, corpus: Path) -> Path:
    labels = load_corpus(str(corpus), splits=["train"]).label_list()[::-1]  # an order of its own
    return save_random_tagger(base, workspace / "teacher", labels, seed=1)


@pytest.fixture(scope="module")
def texts(workspace: Path) -> dict[str, Path]:
    plain = workspace / "plain.txt"
    plain.write_text("Peter visited Paris.\n\n   \nAcme met Smith's team in London\n")
    jsonl = workspace / "texts.jsonl"
    jsonl.write_text(json.dumps({"text": "New York near Paris."}) + "\n\n" + json.dumps({"text": "the Acme"}) + "\n")
    return {"plain": plain, "jsonl": jsonl}


def config_for(teacher: Path, cache: Path, **distill_options):
    return load_config(None, {"distill": {"teacher": str(teacher), "cache_dir": str(cache), **distill_options},
                              "max_length": 64, "precision": "fp32"})  # fmt: skip


def batch_inputs(distillation, tokenizer, sentences, config, base_collator, rows: slice = slice(0, 8)):
    """One collated batch of training rows, with the teacher (distillation collator) and without (plain)."""
    encoded = distillation.training_rows(
        encode_split(tokenizer, sentences, distillation.labels, config, train=True), tokenizer, config
    )
    features = [distillation.dataset(encoded)[k] for k in range(len(encoded.examples))[rows]]
    plain = base_collator([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])
    return distillation.collator(base_collator)(features), plain


def collators(tokenizer) -> dict[str, object]:
    return {
        "padded": DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX),
        "packed": PackingCollator(tokenizer.pad_token_id, pack_tokens=48),
    }


def test_the_loss_is_the_weighted_sum_of_gold_ce_and_scaled_kl() -> None:
    """Against a hand computation: (1 - w) * CE + w * T^2 * mean over words of KL(teacher_T || student_T)."""
    logits = torch.tensor([[[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [0.3, 0.2, -1.0]]])
    slots = torch.tensor([[IGNORE_INDEX, 4, 0]])
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 3.0]])
    weight, temperature, gold = 0.3, 2.0, torch.tensor(1.25)

    def softmax(row):
        exp = np.exp(np.asarray(row, dtype=np.float64) / temperature)
        return exp / exp.sum()

    pairs = zip(teacher, logits[0, 1:], strict=True)
    kl = np.mean([np.sum(softmax(t) * np.log(softmax(t) / softmax(s))) for t, s in pairs])
    expected = (1 - weight) * 1.25 + weight * temperature**2 * kl
    loss = distill.distillation_loss(logits, gold, slots, teacher, weight, temperature)
    assert loss.item() == pytest.approx(expected, rel=TIGHT)
    assert distill.distillation_loss(logits, None, slots, teacher, weight, temperature).item() == pytest.approx(
        weight * temperature**2 * kl, rel=TIGHT
    )


@pytest.mark.parametrize("batching", ["padded", "packed"])
def test_weight_zero_is_plain_training(batching, teacher, base, train_sentences, workspace) -> None:
    config = config_for(teacher, workspace / "cache-a", weight=0.0, temperature=2.0)
    distillation = distill.prepare_distillation(config, train_sentences, "fp32", log=lambda _: None)
    tokenizer = load_tokenizer(base)
    torch.manual_seed(5)
    student = build_token_classifier(base, distillation.labels, "full").eval()
    inputs, plain = batch_inputs(distillation, tokenizer, train_sentences, config, collators(tokenizer)[batching])
    expected = student(**plain).loss
    loss, _ = distill.distill_step(student, inputs, weight=0.0, temperature=2.0)
    assert abs(loss.item() - expected.item()) <= TIGHT * abs(expected.item())
    distilled, _ = distill.distill_step(student, inputs, weight=1.0, temperature=2.0)
    assert distilled.item() > 1e-3, "the KL term this test cancels is not itself zero"


@pytest.mark.parametrize("batching", ["padded", "packed"])
def test_a_copy_of_the_teacher_has_zero_loss_at_weight_one_temperature_one(
    batching, teacher, base, train_sentences, workspace
) -> None:
    config = config_for(teacher, workspace / "cache-b", weight=1.0, temperature=1.0)
    distillation = distill.prepare_distillation(config, train_sentences, "fp32", log=lambda _: None)
    tokenizer = load_tokenizer(base)
    inputs, _ = batch_inputs(distillation, tokenizer, train_sentences, config, collators(tokenizer)[batching])
    copy, _, _ = load_tagger(teacher)
    loss, _ = distill.distill_step(copy, inputs, weight=1.0, temperature=1.0)
    assert abs(loss.item()) <= TIGHT
    torch.manual_seed(7)
    other = build_token_classifier(base, distillation.labels, "full").eval()
    assert distill.distill_step(other, inputs, weight=1.0, temperature=1.0)[0].item() > 1e-3


@pytest.mark.parametrize("batching", ["padded", "packed"])
def test_teacher_slots_sit_where_the_gold_labels_are(batching, teacher, base, train_sentences, workspace) -> None:
    """The teacher's distribution of a word is trained at the sub-token that carries the word's gold label."""
    config = config_for(teacher, workspace / "cache-a")
    distillation = distill.prepare_distillation(config, train_sentences, "fp32", log=lambda _: None)
    tokenizer = load_tokenizer(base)
    inputs, plain = batch_inputs(distillation, tokenizer, train_sentences, config, collators(tokenizer)[batching])
    slots = inputs["teacher_slot"]
    assert torch.equal(slots != IGNORE_INDEX, plain["labels"] != IGNORE_INDEX)
    expected = distillation.cache.logits[slots[slots != IGNORE_INDEX].numpy()]
    assert np.array_equal(inputs["teacher_logits"].numpy(), expected)


def test_the_cache_reads_back_the_teachers_logits_bit_for_bit(teacher, train_sentences, texts, workspace) -> None:
    config = config_for(teacher, workspace / "cache-c", unlabelled=[str(texts["plain"]), str(texts["jsonl"])])
    distillation = distill.prepare_distillation(config, train_sentences, "fp32", log=lambda _: None)
    tagger = Tagger.load(teacher, precision="fp32", decoding="argmax")
    direct = tagger.predict_words([s.tokens for s in train_sentences], documents=[s.doc_id for s in train_sentences])
    unlabelled = tagger.predict_words(distillation.unlabelled)
    cache = distillation.cache
    assert isinstance(cache.logits, np.memmap) and cache.logits.dtype == np.float32
    expected = [*direct.logits, *unlabelled.logits]
    assert len(cache.offsets) == len(expected) + 1 == len(train_sentences) + 4 + 1
    for index, logits in enumerate(expected):
        assert np.array_equal(cache.sentence(index), logits.numpy()), index
    assert cache.labels == read_meta(teacher).labels
    assert cache.header["teacher"] == str(teacher.resolve()) and cache.header["n_words"] == cache.logits.shape[0]


def test_the_cache_is_reused_and_invalidated_by_a_new_teacher_or_new_data(
    teacher, base, train_sentences, workspace, monkeypatch
) -> None:
    runs: list[int] = []
    original = distill.run_teacher

    def counted(tagger, sentences, documents):
        runs.append(len(sentences))
        return original(tagger, sentences, documents)

    monkeypatch.setattr(distill, "run_teacher", counted)
    cache_dir = workspace / "cache-d"
    first = distill.prepare_distillation(config_for(teacher, cache_dir), train_sentences, "fp32", lambda _: None)
    assert runs == [len(train_sentences)]
    again = distill.prepare_distillation(config_for(teacher, cache_dir), train_sentences, "fp32", lambda _: None)
    assert runs == [len(train_sentences)] and again.cache.folder == first.cache.folder, "the teacher ran again"
    fewer = distill.prepare_distillation(config_for(teacher, cache_dir), train_sentences[:-1], "fp32", lambda _: None)
    assert len(runs) == 2 and fewer.cache.folder != first.cache.folder
    retrained = save_random_tagger(base, workspace / "teacher-2", read_meta(teacher).labels, seed=2)
    other = distill.prepare_distillation(config_for(retrained, cache_dir), train_sentences, "fp32", lambda _: None)
    assert len(runs) == 3 and other.cache.folder != first.cache.folder
    assert not np.array_equal(other.cache.logits, first.cache.logits)
    (first.cache.folder / distill.HEADER_FILE).unlink()  # a damaged cache is rebuilt, not read
    distill.prepare_distillation(config_for(teacher, cache_dir), train_sentences, "fp32", lambda _: None)
    assert len(runs) == 4


def test_unlabelled_files_are_read_as_texts_split_like_predict(texts) -> None:
    assert distill.read_unlabelled(texts["plain"]) == [
        ["Peter", "visited", "Paris", "."], ["Acme", "met", "Smith", "'s", "team", "in", "London"],
    ]  # fmt: skip
    assert distill.read_unlabelled(texts["jsonl"]) == [["New", "York", "near", "Paris", "."], ["the", "Acme"]]


@pytest.mark.parametrize(
    ("line", "message"),
    [("{not json", r"bad\.jsonl:3: not a JSON object"), ('{"txt": "x"}', r'bad\.jsonl:3: .*string "text" field'),
     ('["a"]', r'bad\.jsonl:3: .*string "text" field')],
)  # fmt: skip
def test_a_bad_jsonl_line_is_an_error_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "Paris"}) + "\n\n" + line + "\n")
    with pytest.raises(DataFormatError, match=message):
        distill.read_unlabelled(path)
    with pytest.raises(LsfaError, match="not found"):
        distill.read_unlabelled(tmp_path / "missing.txt")


def test_unlabelled_texts_add_kl_only_rows(teacher, base, train_sentences, texts, workspace) -> None:
    config = config_for(teacher, workspace / "cache-c", unlabelled=f"{texts['plain']},{texts['jsonl']}")
    assert config.distill.unlabelled == [str(texts["plain"]), str(texts["jsonl"])], "a flag lists files with commas"
    distillation = distill.prepare_distillation(config, train_sentences, "fp32", log=lambda _: None)
    tokenizer = load_tokenizer(base)
    inputs, _ = batch_inputs(distillation, tokenizer, train_sentences, config, collators(tokenizer)["packed"],
                             rows=slice(-4, None))  # fmt: skip
    assert (inputs["labels"] == IGNORE_INDEX).all() and (inputs["teacher_slot"] != IGNORE_INDEX).sum() == 4 + 7 + 5 + 2
    torch.manual_seed(5)
    student = build_token_classifier(base, distillation.labels, "full").eval()
    kl_only = distill.distill_step(student, inputs, weight=0.5, temperature=2.0)[0]
    assert torch.isfinite(kl_only) and kl_only.item() > 1e-3
    assert distill.distill_step(student, inputs, weight=0.0, temperature=2.0)[0].item() == 0.0, "no gold term"


def test_the_teacher_must_know_every_training_tag(teacher, base, train_sentences, workspace) -> None:
    narrow = save_random_tagger(base, workspace / "narrow", ["O", "B-PER"], seed=3)
    with pytest.raises(LsfaError, match=r"lack tags of the training split: B-LOC"):
        distill.prepare_distillation(config_for(narrow, workspace / "cache-e"), train_sentences, "fp32")


def test_lsfa_distill_saves_a_tagger_whose_card_names_its_teacher(
    teacher, base, corpus, texts, workspace, monkeypatch, capsys
) -> None:
    from lsfa.cli import main

    out = workspace / "student"
    args = ["lsfa", "distill", "--model", str(base), "--corpus", str(corpus), "--output-dir", str(out),
            "--distill-teacher", str(teacher), "--distill-weight", "0.7", "--distill-temperature", "3",
            "--distill-unlabelled", f"{texts['plain']},{texts['jsonl']}", "--distill-cache-dir",
            str(workspace / "cache-f"), "--layers", "1", "--epochs", "1", "--max-steps", "3", "--batch-size", "8",
            "--lora-r", "2", "--lora-alpha", "4", "--max-length", "64", "--precision", "fp32", "--threads", "1",
            "--early-stopping-patience", "null", "--logging-steps", "1"]  # fmt: skip
    steps: list[int] = []
    original = distill.distill_step

    def counted(model, inputs, weight, temperature):
        steps.append(int((inputs["teacher_slot"] != IGNORE_INDEX).sum()))
        assert (weight, temperature) == (0.7, 3.0)
        return original(model, inputs, weight, temperature)

    monkeypatch.setattr(distill, "distill_step", counted)
    monkeypatch.setattr(sys, "argv", args)
    main()
    assert "running the teacher" in capsys.readouterr().out
    assert len(steps) == 3 and all(steps), "every training step has the teacher's distributions"
    tagger = Tagger.load(out / "model", precision="fp32")
    assert tagger.labels == read_meta(teacher).labels
    assert isinstance(tagger("Peter visited Paris."), list)
    record = read_meta(out / "model").extra["distillation"]
    assert (record["teacher"], record["weight"], record["temperature"]) == (str(teacher.resolve()), 0.7, 3.0)
    assert record["unlabelled_texts"] == 4
    assert json.loads((out / "metrics.json").read_text())["distillation"] == record
    card = (out / "model" / "README.md").read_text()
    assert f"distilled from the tagger `{teacher.resolve()}`" in card and "temperature 3" in card
    shutil.rmtree(out)


def test_lsfa_distill_without_a_teacher_is_a_one_line_error(monkeypatch, capsys) -> None:
    from lsfa.cli import main

    monkeypatch.setattr(sys, "argv", ["lsfa", "distill", "--model", "smollm2-135m"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2 and "lsfa distill needs a teacher: --distill-teacher" in capsys.readouterr().err


def test_an_encoder_student_learns_from_a_decoder_teacher(teacher, corpus, workspace, monkeypatch) -> None:
    """Word-level distributions cross tokenizers: a WordPiece encoder student (padded batches: encoders are not
    packed) of the byte-level BPE llama teacher, through ``lsfa.train``."""
    import lsfa
    from tests.tiny import tiny_encoder_dir

    steps: list[int] = []
    original = distill.distill_step
    monkeypatch.setattr(distill, "distill_step", lambda *a: steps.append(1) or original(*a))
    encoder = tiny_encoder_dir(workspace / "encoder")
    tagger = lsfa.train(model=str(encoder), corpus=str(corpus), output_dir=str(workspace / "encoder-student"),
                        distill={"teacher": str(teacher), "cache_dir": str(workspace / "cache-g"), "weight": 1.0},
                        mode="full", epochs=1, max_steps=2, batch_size=8, max_length=64, precision="fp32",
                        threads=1, early_stopping_patience=None, log=lambda _: None)  # fmt: skip
    assert len(steps) == 2
    assert tagger.labels == read_meta(teacher).labels
    assert read_meta(workspace / "encoder-student" / "model").extra["distillation"]["weight"] == 1.0
