"""A multimodal Gemma 3 checkpoint (4B and up: ``Gemma3ForConditionalGeneration``) gives a token classifier over its
language model only: no vision weights built, loaded or adapted (issue #35 item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from lsfa.errors import LsfaError
from lsfa.models.classifier import apply_lora, build_token_classifier
from lsfa.models.estimate import count_on_meta_device
from tests.tiny import byte_bpe_tokenizer

LABELS = ["O", "B-PER", "I-PER"]


@pytest.fixture(scope="module")
def multimodal(tmp_path_factory) -> Path:
    """A tiny random Gemma 3 multimodal checkpoint, saved as transformers saves one (hub key layout)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    tokenizer = byte_bpe_tokenizer()
    text = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=8, layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)  # fmt: skip
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4))
    folder = tmp_path_factory.mktemp("gemma3-mm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _stored(folder: Path, key: str) -> torch.Tensor:
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        return weights.get_tensor(key)


def test_the_checkpoint_holds_a_vision_tower(multimodal) -> None:
    with safe_open(str(multimodal / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert any(key.startswith("vision_tower.") for key in keys)
    assert any(key.startswith("language_model.model.layers.") for key in keys)


def test_the_classifier_is_the_language_model_only_with_its_weights(multimodal) -> None:
    model = build_token_classifier(multimodal, LABELS, "full")
    assert model.config.model_type == "gemma3_text"
    names = [name for name, _ in model.named_modules()]
    assert not any("vision" in name or "multi_modal" in name for name in names)
    stored = _stored(multimodal, "language_model.model.layers.1.mlp.down_proj.weight")
    assert torch.equal(model.model.layers[1].mlp.down_proj.weight, stored)  # loaded, not freshly initialised
    assert torch.equal(model.model.embed_tokens.weight, _stored(multimodal, "language_model.model.embed_tokens.weight"))


def test_all_linear_lora_covers_text_layers_only_and_trains(multimodal) -> None:
    model = apply_lora(build_token_classifier(multimodal, LABELS, "full"), r=4, alpha=8, dropout=0.0)
    adapted = [name for name, _ in model.named_modules() if name.endswith(".lora_A")]
    assert adapted and all(".model.layers." in name for name in adapted)
    assert len(adapted) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 text layers
    ids = torch.randint(3, 100, (2, 7))
    output = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros_like(ids))
    output.loss.backward()
    grads = [p.grad for name, p in model.named_parameters() if p.requires_grad and "lora_B" in name]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)  # every adapter gets a gradient


def test_full_attention_sees_the_right_context_and_causal_does_not(multimodal) -> None:
    """LS-FA: the first token's logits change when a later token does; LS-CA: they do not."""
    ids = torch.randint(3, 100, (1, 6))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 100 + 3
    for attention, sees_right in (("full", True), ("causal", False)):
        model = build_token_classifier(multimodal, LABELS, attention).eval()
        with torch.no_grad():
            first, second = model(input_ids=ids).logits[0, 0], model(input_ids=changed).logits[0, 0]
        assert (not torch.allclose(first, second)) == sees_right, attention


def test_the_estimate_counts_the_language_model_only(multimodal) -> None:
    model = build_token_classifier(multimodal, LABELS, "full")
    counts = count_on_meta_device(multimodal)
    head = sum(p.numel() for p in model.score.parameters())
    assert counts.total == sum(p.numel() for p in model.parameters()) - head + 32 * 9 + 9  # the estimate's 9 labels
    assert counts.layers == 2


def test_a_language_model_under_another_prefix_is_refused(multimodal, tmp_path) -> None:
    from safetensors.torch import save_file

    moved = tmp_path / "moved"
    moved.mkdir()
    for name in multimodal.iterdir():
        if name.name != "model.safetensors":
            (moved / name.name).write_bytes(name.read_bytes())
    with safe_open(str(multimodal / "model.safetensors"), "pt") as weights:
        keys = weights.keys()  # safe_open is not iterable
        tensors = {key.replace("language_model.model.", "text.", 1): weights.get_tensor(key) for key in keys}
    save_file(tensors, str(moved / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(LsfaError, match="language-model weights not found in the multimodal checkpoint"):
        build_token_classifier(moved, LABELS, "full")


def test_lora_wrap_and_adapter_load_raise_no_gradient_checkpointing_warning(multimodal, tmp_path) -> None:
    """peft reads the deprecated ``is_gradient_checkpointing`` on every wrap and load (issue #37 item 8)."""
    import warnings

    from lsfa.models.saving import TaggerMeta, load_tagger, save_tagger
    from tests.tiny import byte_bpe_tokenizer as tokenizer_of

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = apply_lora(build_token_classifier(multimodal, LABELS, "full"), r=4, alpha=8, dropout=0.0)
        meta = TaggerMeta(base_model=str(multimodal), model_type="gemma3_text", labels=LABELS, weights="lora")
        save_tagger(model, tokenizer_of(), tmp_path / "tagger", meta)
        load_tagger(tmp_path / "tagger", merge=True)
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
