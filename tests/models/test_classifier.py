"""Tests for lsfa.models.classifier: token classifiers from tiny decoders/encoders, LoRA wrapping, parameter counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoConfig

from lsfa.errors import LsfaError
from lsfa.models.classifier import (
    apply_lora,
    build_token_classifier,
    count_parameters,
    ensure_token_classification_class,
    head_name,
    is_encoder,
    linear_targets,
    load_tokenizer,
)
from tests.tiny import tiny_decoder_dir, tiny_encoder_dir, wordpiece_tokenizer
from tests.tolerances import sees_right_context as moved

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
DECODERS = ["llama", "qwen2", "gemma3_text", "gpt2"]
FAMILIES = [*DECODERS, "bert"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """One tiny random model folder per family (built once for the module)."""
    root = tmp_path_factory.mktemp("tiny-models")
    dirs = {family: tiny_decoder_dir(root / family, family) for family in DECODERS}
    dirs["bert"] = tiny_encoder_dir(root / "bert")
    return dirs


def first_position_logits(model, tokenizer, last_word: str) -> torch.Tensor:
    """Logits at the first two positions of "Peter visited <last_word>": they see it only if bidirectional."""
    batch = tokenizer(f"Peter visited {last_word}", return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits[0, :2]


def sees_right_context(model, tokenizer) -> bool:
    """Whether the first logits move with the last word (thresholds and why: tests/tolerances.py)."""
    return moved(first_position_logits(model, tokenizer, "Brussels"), first_position_logits(model, tokenizer, "London"))


@pytest.mark.parametrize("family", FAMILIES)
def test_build_token_classifier_has_a_fresh_head_over_the_labels(model_dirs, family: str) -> None:
    model = build_token_classifier(model_dirs[family], LABELS)
    assert model.config.num_labels == len(LABELS)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.label2id == {label: k for k, label in enumerate(LABELS)}
    head = getattr(model, head_name(model))
    assert isinstance(head, nn.Linear)
    assert head.out_features == len(LABELS)
    tokenizer = load_tokenizer(model_dirs[family])
    batch = tokenizer(["Peter visited Brussels", "in 1996"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (*batch["input_ids"].shape, len(LABELS))
    assert is_encoder(model.config) == (family == "bert")


@pytest.mark.parametrize("family", DECODERS)
def test_decoder_attention_setting_is_applied(model_dirs, family: str) -> None:
    tokenizer = load_tokenizer(model_dirs[family])
    full = build_token_classifier(model_dirs[family], LABELS, attention="full")
    causal = build_token_classifier(model_dirs[family], LABELS, attention="causal")
    assert full.config.lsfa_attention == "full"
    assert causal.config.lsfa_attention == "causal"
    assert sees_right_context(full, tokenizer)
    assert not sees_right_context(causal, tokenizer)


def test_encoder_is_bidirectional_and_refuses_a_causal_setting(model_dirs) -> None:
    model = build_token_classifier(model_dirs["bert"], LABELS)
    assert sees_right_context(model, load_tokenizer(model_dirs["bert"]))
    with pytest.raises(LsfaError, match="encoder"):
        build_token_classifier(model_dirs["bert"], LABELS, attention="causal")


def test_gemma3_text_gets_a_registered_token_classification_class(model_dirs) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING

    config = AutoConfig.from_pretrained(model_dirs["gemma3_text"])
    ensure_token_classification_class(config)
    ensure_token_classification_class(config)  # idempotent
    head_class = MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING[type(config)]
    assert head_class.__name__ == "Gemma3TextForTokenClassification"
    model = build_token_classifier(model_dirs["gemma3_text"], LABELS)
    assert isinstance(model, head_class)
    assert head_name(model) == "score"


def test_tokenizer_gets_a_pad_token_and_pads_right(model_dirs) -> None:
    tokenizer = load_tokenizer(model_dirs["llama"])
    assert tokenizer.pad_token is not None
    assert tokenizer.padding_side == "right"


# --------------------------------------------------------------------------------------------------------------
# LoRA
# --------------------------------------------------------------------------------------------------------------


def linear_leaf_names(model: nn.Module, head: str) -> set[str]:
    from transformers.pytorch_utils import Conv1D

    return {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear | Conv1D) and not name.startswith(head)
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_default_lora_targets_every_linear_layer_but_not_the_head(model_dirs, family: str) -> None:
    model = build_token_classifier(model_dirs[family], LABELS)
    head = head_name(model)
    expected = linear_leaf_names(model, head)
    assert set(linear_targets(model)) == expected
    assert head not in expected
    peft_model = apply_lora(model, r=4, alpha=8)
    config = peft_model.peft_config["default"]
    assert head in config.modules_to_save
    assert set(config.target_modules) == expected
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    head_trainable = {name for name in trainable if f".{head}." in name}
    assert head_trainable and all("modules_to_save" in name for name in head_trainable)
    assert not any("lora_" in name for name in head_trainable), "the head must be trained fully, not by LoRA"
    assert trainable - head_trainable and all("lora_" in name for name in trainable - head_trainable)
    wrapped = {name.rsplit(".", 1)[-1] for name, module in peft_model.named_modules() if hasattr(module, "lora_A")}
    assert wrapped == expected


def test_lora_targets_as_comma_separated_text(model_dirs) -> None:
    model = build_token_classifier(model_dirs["llama"], LABELS)
    assert linear_targets(model, "q_proj, v_proj") == ["q_proj", "v_proj"]
    peft_model = apply_lora(model, r=2, alpha=4, target_modules="q_proj,v_proj")
    wrapped = {name.rsplit(".", 1)[-1] for name, module in peft_model.named_modules() if hasattr(module, "lora_A")}
    assert wrapped == {"q_proj", "v_proj"}


def test_unknown_lora_target_is_a_clear_error(model_dirs) -> None:
    model = build_token_classifier(model_dirs["llama"], LABELS)
    with pytest.raises(LsfaError, match="c_attn"):
        apply_lora(model, target_modules="q_proj,c_attn")


def test_lora_model_keeps_its_attention_setting(model_dirs) -> None:
    tokenizer = load_tokenizer(model_dirs["llama"])
    full = apply_lora(build_token_classifier(model_dirs["llama"], LABELS, attention="full"), r=2, alpha=4)
    causal = apply_lora(build_token_classifier(model_dirs["llama"], LABELS, attention="causal"), r=2, alpha=4)
    assert sees_right_context(full, tokenizer)
    assert not sees_right_context(causal, tokenizer)


def test_count_parameters_matches_lora_arithmetic(model_dirs) -> None:
    model = build_token_classifier(model_dirs["llama"], LABELS)
    plain = count_parameters(model)
    assert plain["trainable"] == plain["total"] == sum(p.numel() for p in model.parameters())
    assert plain["trainable_pct"] == pytest.approx(100.0)
    head = model.score
    head_size = sum(p.numel() for p in head.parameters())
    rank = 4
    expected_lora = sum(
        rank * (module.in_features + module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not name.startswith("score")
    )
    counts = count_parameters(apply_lora(model, r=rank, alpha=8))
    assert counts["trainable"] == expected_lora + head_size
    assert counts["trainable_pct"] == pytest.approx(100.0 * counts["trainable"] / counts["total"])
    assert counts["total"] > plain["total"]


def test_encoder_without_sdpa_support_loads(tmp_path) -> None:
    """MPNet has no SDPA attention in transformers 5.23: encoders must not be forced onto it."""
    from transformers import MPNetConfig, MPNetModel

    tokenizer = wordpiece_tokenizer()
    config = MPNetConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        pad_token_id=tokenizer.pad_token_id,
    )
    MPNetModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = build_token_classifier(tmp_path, LABELS)
    assert type(model).__name__ == "MPNetForTokenClassification"
    assert sees_right_context(model, load_tokenizer(tmp_path))
    # A trained MPNet tagger saved and loaded again (lsfa evaluate --model-dir, lsfa bench --encoder-dir).
    from lsfa.models.saving import TaggerMeta, load_tagger, save_tagger

    meta = TaggerMeta(base_model=str(tmp_path), model_type="mpnet", labels=LABELS, attention="full", weights="full")
    save_tagger(model, load_tokenizer(tmp_path), tmp_path / "tagger", meta)
    loaded, tokenizer, _ = load_tagger(tmp_path / "tagger")
    assert type(loaded).__name__ == "MPNetForTokenClassification" and sees_right_context(loaded, tokenizer)


@pytest.mark.parametrize("family", DECODERS)
def test_layers_keeps_only_the_first_k_decoder_layers(model_dirs, family: str) -> None:
    full = build_token_classifier(model_dirs[family], LABELS, "full")
    shallow = build_token_classifier(model_dirs[family], LABELS, "full", layers=1)
    assert shallow.config.get_text_config().num_hidden_layers == 1
    count = sum(p.numel() for p in shallow.parameters())
    assert count < sum(p.numel() for p in full.parameters())  # the dropped layer was never built
    tokenizer = load_tokenizer(model_dirs[family])
    assert moved(
        first_position_logits(shallow, tokenizer, "Brussels"), first_position_logits(shallow, tokenizer, "London")
    )
    with pytest.raises(LsfaError, match="layers: 9 is not between 1 and the model's 2 layers"):
        build_token_classifier(model_dirs[family], LABELS, "full", layers=9)


def test_layers_is_refused_for_encoders(model_dirs) -> None:
    with pytest.raises(LsfaError, match="is an encoder"):
        build_token_classifier(model_dirs["bert"], LABELS, "full", layers=1)


@pytest.mark.parametrize("tied", [True, False])
def test_the_one_resolver_serves_causal_lms_too(tied: bool) -> None:
    """What the IFT baseline gets for ``all-linear``: every projection but ``lm_head`` (llama), and GPT-2's
    ``Conv1D`` projections (an ``nn.Linear``-only rule found none there and refused the model)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.tiny import tiny_causal_lm

    llama, _ = tiny_causal_lm(tied=tied)
    assert linear_targets(llama) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    assert linear_targets(gpt2) == ["c_attn", "c_fc", "c_proj"]
