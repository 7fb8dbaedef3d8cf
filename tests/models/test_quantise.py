"""QLoRA on CPU (bitsandbytes' CPU library): a tiny llama in 4-bit nf4 with LoRA trains, keeps its head
unquantised, survives lsfa's casts, and a trained QLoRA tagger reloads (dequantised and merged, or unmerged)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lsfa.errors import LsfaError
from lsfa.models.classifier import apply_lora, build_token_classifier
from lsfa.models.optimise import cast_frozen_linear_weights, optimise_for_inference
from lsfa.models.quantise import is_quantised_layer, prepare_for_kbit_training, quantised_layers
from lsfa.training.config import load_config
from tests.tiny import byte_bpe_tokenizer

bnb = pytest.importorskip("bitsandbytes", reason="QLoRA tests need lsfa[quant] (bitsandbytes), installed by make")
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def tiny_llama_64(path: Path) -> Path:
    """A tiny random llama whose layers are 64 wide or more: bitsandbytes' CPU inference kernel (on CPUs with
    AVX-512 BF16) repacks 4-bit weights in blocks of 64 input features and fails on the usual 32-wide tiny model."""
    from transformers import LlamaConfig, LlamaModel

    tokenizer = byte_bpe_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_llama_64(tmp_path_factory.mktemp("quant") / "llama")


def qlora(base: Path, gradient_checkpointing: bool = False) -> nn.Module:
    model = build_token_classifier(base, LABELS, "full", quantize="4bit")
    model = prepare_for_kbit_training(model, gradient_checkpointing)
    return apply_lora(model, r=4, alpha=8, dropout=0.0)


def test_the_base_is_nf4_and_the_head_is_not(base):
    model = build_token_classifier(base, LABELS, "full", quantize="4bit")
    projection = model.model.layers[0].self_attn.q_proj
    assert isinstance(projection, bnb.nn.Linear4bit)
    assert projection.weight.quant_state.quant_type == "nf4"
    assert projection.weight.quant_state.nested  # double quantisation
    assert type(model.score) is nn.Linear and model.score.weight.dtype == torch.float32
    assert quantised_layers(model) == 2 * 7  # every projection of both layers


@pytest.mark.parametrize("gradient_checkpointing", [False, True])
def test_a_qlora_step_trains_and_the_loss_falls(base, gradient_checkpointing):
    torch.manual_seed(0)
    model = qlora(base, gradient_checkpointing).train()
    if gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    optimiser = torch.optim.AdamW(trainable, lr=1e-2)
    ids, labels = torch.randint(3, 200, (4, 12)), torch.randint(0, len(LABELS), (4, 12))
    losses = []
    for _ in range(6):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05
    lora_layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert is_quantised_layer(lora_layer) and lora_layer.lora_A["default"].weight.requires_grad


def test_casts_skip_quantised_layers(base):
    model = qlora(base).eval()
    ids = torch.randint(3, 200, (2, 9))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    packed = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    codes = packed.data.clone()
    cast_frozen_linear_weights(model, torch.bfloat16)
    assert packed.dtype == torch.uint8 and torch.equal(packed.data, codes)
    with torch.no_grad():  # (bitsandbytes' CPU bf16 kernel needs layers wider than this tiny model's 32)
        after = model(input_ids=ids).logits
    assert torch.equal(after, before)  # the packed layers were left alone, the head's trained copy is fp32
    with pytest.raises(LsfaError, match="quantised"):
        optimise_for_inference(qlora(base), "bf16-full")


def test_a_full_fine_tuning_of_a_quantised_base_is_refused():
    with pytest.raises(LsfaError, match="use finetune: lora"):
        load_config(overrides={"quantize": "4bit", "mode": "full"})
    assert load_config(overrides={"quantize": "4bit"}).quantize == "4bit"


def test_a_qlora_tagger_trains_saves_and_reloads(tmp_path, base):
    import lsfa
    from lsfa.models.saving import read_meta
    from tests.training.synthetic import write_synthetic_corpus

    corpus = write_synthetic_corpus(tmp_path / "corpus", train=48, dev=12, test=12)
    tagger = lsfa.train(
        model=str(base), corpus=str(corpus), output_dir=str(tmp_path / "run"), quantize="4bit",
        lora={"r": 4, "alpha": 8}, epochs=2, learning_rate=5e-3, batch_size=8, max_length=64, precision="fp32",
        threads=1, seed=0, early_stopping_patience=None,
    )  # fmt: skip
    folder = tmp_path / "run" / "model"
    meta = read_meta(folder)
    assert meta.quantize == "4bit" and meta.weights == "lora"
    merged = lsfa.Tagger.load(folder, precision="fp32")
    assert quantised_layers(merged.model) == 0  # dequantised, then merged
    unmerged = lsfa.Tagger.load(folder, precision="fp32", merge=False)
    assert quantised_layers(unmerged.model) > 0
    words = [["Peter", "visited", "Paris", "."], ["the", "Acme", "met", "Smith", "near", "London"]]
    first, second = merged.predict_words(words), unmerged.predict_words(words)
    assert first.tags == second.tags
    # Same function: dequant(W_q) + BA merged vs W_q with BA beside it. Not to 1e-6: bitsandbytes' CPU inference
    # kernel computes 4-bit products in bf16 on CPUs with AVX-512 BF16 (a different adapter would move scores ~0.1).
    pairs = zip(first.scores, second.scores, strict=True)
    assert max(abs(a - b) for x, y in pairs for a, b in zip(x, y, strict=True)) < 1e-2
    assert tagger.labels == merged.labels
