"""Tests for lsfa.models.saving: tagger folders round-trip (LoRA, full, merged) with their attention setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

from lsfa.errors import LsfaError
from lsfa.models.attention import restore_attention
from lsfa.models.classifier import (
    apply_lora,
    build_token_classifier,
    ensure_token_classification_class,
    load_tokenizer,
)
from lsfa.models.saving import META_FILE, TaggerMeta, load_tagger, read_meta, save_tagger
from tests.tiny import tiny_decoder_dir
from tests.tolerances import assert_unchanged
from tests.tolerances import sees_right_context as moved

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TEXTS = ["Peter Blackburn visited Brussels .", "In 1996 ,", "Zürich"]


@pytest.fixture(scope="module")
def base_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bases")
    return {family: tiny_decoder_dir(root / family, family, num_layers=3) for family in ("llama", "gemma3_text")}


def make_tagger(base: Path, weights: str, attention: str = "full"):
    """A tagger whose trainable weights are perturbed, as after training (fresh LoRA would be a no-op)."""
    model = build_token_classifier(base, LABELS, attention=attention)
    if weights in ("lora", "merged"):
        model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    model.eval()
    meta = TaggerMeta(
        base_model=str(base),
        model_type=model.config.model_type,
        labels=LABELS,
        attention=attention,
        weights="lora" if weights in ("lora", "merged") else "full",
    )
    return model, load_tokenizer(base), meta


def logits_of(model, tokenizer, texts=TEXTS) -> torch.Tensor:
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    return logits.masked_fill(~batch["attention_mask"].bool()[..., None], 0.0)


def sees_right_context(model, tokenizer) -> bool:
    """Whether the first two logits move when the last word changes (thresholds: tests/tolerances.py)."""
    first = logits_of(model, tokenizer, ["Peter visited Brussels"])[0, :2]
    second = logits_of(model, tokenizer, ["Peter visited London"])[0, :2]
    return moved(first, second)


@pytest.mark.parametrize("weights", ["lora", "full", "merged"])
def test_round_trip_gives_identical_predictions(base_dirs, tmp_path: Path, weights: str) -> None:
    model, tokenizer, meta = make_tagger(base_dirs["llama"], weights)
    expected = logits_of(model, tokenizer)
    folder = save_tagger(model, tokenizer, tmp_path / "tagger", meta, merge=weights == "merged")
    loaded, loaded_tokenizer, loaded_meta = load_tagger(folder)
    assert loaded_meta.weights == weights
    assert loaded_meta.labels == LABELS
    assert not loaded.training
    assert_unchanged(logits_of(loaded, loaded_tokenizer), expected, "reloaded")
    assert {int(k): v for k, v in loaded.config.id2label.items()} == dict(enumerate(LABELS))


def test_lora_folder_holds_only_the_adapter_and_head(base_dirs, tmp_path: Path) -> None:
    model, tokenizer, meta = make_tagger(base_dirs["llama"], "lora")
    folder = save_tagger(model, tokenizer, tmp_path / "tagger", meta)
    assert (folder / "adapter_config.json").is_file()
    assert (folder / META_FILE).is_file()
    assert not (folder / "model.safetensors").exists()
    assert json.loads((folder / "adapter_config.json").read_text())["modules_to_save"]


def test_lora_tagger_can_be_merged_on_load(base_dirs, tmp_path: Path) -> None:
    model, tokenizer, meta = make_tagger(base_dirs["llama"], "lora")
    expected = logits_of(model, tokenizer)
    folder = save_tagger(model, tokenizer, tmp_path / "tagger", meta)
    merged, merged_tokenizer, _ = load_tagger(folder, merge=True)
    assert not hasattr(merged, "peft_config")
    assert_unchanged(logits_of(merged, merged_tokenizer), expected, "merged (other rounding)")


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
@pytest.mark.parametrize("attention", ["full", "causal", "1"])
def test_merged_export_is_a_plain_transformers_folder(base_dirs, tmp_path: Path, family: str, attention: str) -> None:
    """Anyone can load a merged LS-FA or LS-CA tagger with AutoModelForTokenClassification (restore_attention
    is then a no-op); a layer-subset tagger refuses plain loading, which would be bidirectional in every layer,
    and loads through lsfa with the same logits."""
    model, tokenizer, meta = make_tagger(base_dirs[family], "merged", attention)
    expected = logits_of(model, tokenizer)
    folder = save_tagger(model, tokenizer, tmp_path / "tagger", meta, merge=True)
    if attention not in ("full", "causal"):
        with pytest.raises(ValueError, match="lsfa-layer-subset"):
            AutoConfig.from_pretrained(folder)
        loaded, loaded_tokenizer, _ = load_tagger(folder)
        assert_unchanged(logits_of(loaded, loaded_tokenizer), expected, "loaded through lsfa")
        return
    config = AutoConfig.from_pretrained(folder)
    assert config.lsfa_attention == attention
    ensure_token_classification_class(config)  # a no-op for llama; gemma3_text has no stock class
    plain = AutoModelForTokenClassification.from_pretrained(folder).eval()
    assert str(restore_attention(plain)) == attention
    plain_tokenizer = AutoTokenizer.from_pretrained(folder)
    assert_unchanged(logits_of(plain, plain_tokenizer), expected, "plain transformers")


@pytest.mark.parametrize("weights", ["lora", "full", "merged"])
@pytest.mark.parametrize("attention", ["causal", "full"])
def test_attention_setting_survives_reloading(base_dirs, tmp_path: Path, weights: str, attention: str) -> None:
    model, tokenizer, meta = make_tagger(base_dirs["llama"], weights, attention)
    assert sees_right_context(model, tokenizer) == (attention == "full")
    folder = save_tagger(model, tokenizer, tmp_path / "tagger", meta, merge=weights == "merged")
    loaded, loaded_tokenizer, loaded_meta = load_tagger(folder)
    assert loaded_meta.attention == attention
    assert sees_right_context(loaded, loaded_tokenizer) == (attention == "full")


def test_saving_over_an_existing_tagger_replaces_it_cleanly(base_dirs, tmp_path: Path) -> None:
    first, tokenizer, meta = make_tagger(base_dirs["llama"], "full")
    save_tagger(first, tokenizer, tmp_path / "tagger", meta)
    (tmp_path / "tagger" / "stale.txt").write_text("from the previous save")
    second, _, _ = make_tagger(base_dirs["llama"], "lora")
    save_tagger(second, tokenizer, tmp_path / "tagger", meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tagger"], "no staging or backup folder left behind"
    assert not (tmp_path / "tagger" / "stale.txt").exists()
    assert read_meta(tmp_path / "tagger").weights == "lora"


def test_failed_save_leaves_no_staging_folder(base_dirs, tmp_path: Path) -> None:
    model, _, meta = make_tagger(base_dirs["llama"], "full")

    class BrokenTokenizer:
        def save_pretrained(self, folder):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_tagger(model, BrokenTokenizer(), tmp_path / "tagger", meta)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_saved_tagger_has_the_permissions_of_the_umask(base_dirs, tmp_path: Path, umask: int) -> None:
    """Issue #37 item 5: the folder was 0700 and the weights 0600 whatever the umask (staged by mkdtemp)."""
    import os
    import stat

    model, tokenizer, meta = make_tagger(base_dirs["llama"], "lora")
    previous = os.umask(umask)
    try:
        folder = save_tagger(model, tokenizer, tmp_path / "tagger", meta)
    finally:
        os.umask(previous)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [folder, *folder.rglob("*")]}
    assert modes.pop("tagger") == 0o777 & ~umask
    assert "adapter_model.safetensors" in modes and set(modes.values()) == {0o666 & ~umask}, modes


def test_read_meta_explains_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(LsfaError, match="not an lsfa tagger folder"):
        read_meta(tmp_path)
    (tmp_path / META_FILE).write_text("{not json")
    with pytest.raises(LsfaError, match="unreadable tagger metadata"):
        read_meta(tmp_path)
    (tmp_path / META_FILE).write_text(json.dumps({"base_model": "x", "model_type": "llama", "labels": ["O"]}))
    assert read_meta(tmp_path).weights == "lora"


def test_export_writes_a_self_contained_merged_folder(tiny_taggers, tmp_path: Path) -> None:
    from lsfa.errors import LsfaError
    from lsfa.inference.tagger import Tagger
    from lsfa.models.saving import export_tagger

    folder = export_tagger(tiny_taggers["lora"], tmp_path / "export", merged=True, precision="bf16")
    assert read_meta(folder).weights == "merged" and (folder / "config.json").is_file()
    assert not (folder / "adapter_config.json").exists()
    words = [["Bob", "Carter", "sat"]]
    exported = Tagger.load(folder, precision="fp32", decoding="argmax").predict_words(words)
    original = Tagger.load(tiny_taggers["lora"], precision="fp32", decoding="argmax").predict_words(words)
    same = sum(a == b for a, b in zip(exported.tags[0], original.tags[0], strict=True))
    assert same >= 2  # bf16 weights on disk: a near-tie may flip on a random tiny model
    with pytest.raises(LsfaError, match="already exists"):
        export_tagger(tiny_taggers["lora"], folder)
