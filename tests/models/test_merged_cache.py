"""Tests for lsfa.models.merged_cache: a merged LoRA tagger is loaded from the cache, with the very same weights,
without peft, and never from a stale entry."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from lsfa.models import merged_cache
from lsfa.models.saving import load_tagger, read_meta


@pytest.fixture
def lora_copy(tiny_taggers, tmp_path, monkeypatch) -> Path:
    """A private copy of the tiny LoRA tagger, with its own empty cache folder."""
    monkeypatch.setenv(merged_cache.CACHE_ENV, str(tmp_path / "cache"))
    return Path(shutil.copytree(tiny_taggers["lora"], tmp_path / "lora"))


def _forbid_peft(monkeypatch) -> None:
    """Make any use of peft's loader fail the test: a cache hit must not need it."""
    import peft

    def refuse(*args, **kwargs):
        raise AssertionError("PeftModel.from_pretrained called although the merged weights are cached")

    monkeypatch.setattr(peft.PeftModel, "from_pretrained", refuse)


def _same_weights(first, second) -> bool:
    left, right = first.state_dict(), second.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[name], right[name]) for name in left)


def test_second_merged_load_comes_from_the_cache_with_identical_weights(lora_copy, monkeypatch):
    merged, _, _ = load_tagger(lora_copy, merge=True)
    assert merged_cache.lookup(lora_copy, read_meta(lora_copy), read_meta(lora_copy).base_model) is not None
    _forbid_peft(monkeypatch)
    cached, _, meta = load_tagger(lora_copy, merge=True)
    assert _same_weights(merged, cached)
    ids = torch.tensor([[5, 9, 17, 3]])
    assert torch.equal(merged(input_ids=ids).logits, cached(input_ids=ids).logits)
    assert meta.weights == "lora" and cached.config.is_causal is False  # the tagger's own metadata and attention


def test_a_changed_adapter_is_merged_again(lora_copy, tiny_taggers, tmp_path):
    first, _, _ = load_tagger(lora_copy, merge=True)
    other = tmp_path / "other"
    from tests.inference.tiny_taggers import random_model

    model, tokenizer, meta = random_model(tiny_taggers["base"], lora=True)
    with torch.no_grad():  # different adapter weights, same shapes
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.add_(1.0)
    from lsfa.models.saving import save_tagger

    save_tagger(model, tokenizer, other, meta)
    shutil.copyfile(other / "adapter_model.safetensors", lora_copy / "adapter_model.safetensors")
    second, _, _ = load_tagger(lora_copy, merge=True)
    assert not _same_weights(first, second)
    assert _same_weights(second, model.merge_and_unload())


def test_unmerged_loads_and_a_disabled_cache_write_nothing(lora_copy, tmp_path, monkeypatch):
    load_tagger(lora_copy, merge=False)
    assert not (tmp_path / "cache").exists()
    monkeypatch.setenv(merged_cache.CACHE_ENV, "off")
    load_tagger(lora_copy, merge=True)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "off").exists()


def test_an_unwritable_cache_is_skipped(lora_copy, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(merged_cache.CACHE_ENV, str(blocker / "cache"))
    model, _, _ = load_tagger(lora_copy, merge=True)
    assert not hasattr(model, "peft_config")  # merged and usable all the same


def _fake_entry(root: Path, name: str, tagger: Path, used_ns: int) -> Path:
    entry = root / name
    entry.mkdir(parents=True)
    source = entry / merged_cache.SOURCE_FILE
    source.write_text(json.dumps({"tagger": str(tagger)}))
    os.utime(source, ns=(used_ns, used_ns))
    return entry


def test_only_the_most_recently_used_entries_of_existing_taggers_are_kept(tmp_path):
    root, taggers = tmp_path / "cache", tmp_path / "taggers"
    for index in range(6):
        (taggers / str(index)).mkdir(parents=True)
        _fake_entry(root, f"e{index}", taggers / str(index), used_ns=(index + 1) * 10**9)
    _fake_entry(root, "gone", taggers / "deleted", used_ns=10**12)  # the newest, but its tagger folder is gone
    (root / ".e9.staging").mkdir()  # not an entry: left alone
    merged_cache.prune(root, keep=4)
    assert sorted(path.name for path in root.iterdir()) == [".e9.staging", "e2", "e3", "e4", "e5"]
