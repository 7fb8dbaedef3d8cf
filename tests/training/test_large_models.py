"""The large-model paths that can be checked on CPU: config keys and flags, the FlashAttention-2 guard and its
padding-free batches, FSDP/DeepSpeed refused, fp16 and checkpointing arguments, half-dtype builds that keep the
mixed-precision layout, and the memory estimate from a config alone (docs/large-models.md)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from lsfa.errors import LsfaError
from lsfa.models import attention as attention_module
from lsfa.models.attention import check_implementation
from lsfa.models.estimate import GIB, count_on_meta_device, estimates
from lsfa.models.placement import device_map, raise_to_fp32_but_frozen_linear, training_load_dtype
from lsfa.training.collate import FlatteningCollator, packing_collator
from lsfa.training.config import config_help, load_config, parse_overrides
from lsfa.training.distributed import refuse_sharded_training
from lsfa.training.trainer import check_training_precision, training_arguments
from tests.tiny import tiny_decoder_dir

LLAMA_8B = {
    "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
    "dtype": "bfloat16",
}  # fmt: skip
"""Llama-3.1-8B's shape (its config.json, abridged): the memory estimate needs nothing else."""


def test_the_new_keys_are_flags_in_their_groups():
    overrides = parse_overrides(
        ["--quantize", "4bit", "--gradient-checkpointing", "--attn-implementation", "flash_attention_2",
         "--precision", "fp16"]
    )  # fmt: skip
    config = load_config(overrides=overrides)
    assert (config.quantize, config.gradient_checkpointing, config.precision) == ("4bit", True, "fp16")
    assert config.attn_implementation == "flash_attention_2"
    shown = config_help()
    assert "--quantize" in shown and "--gradient-checkpointing" in shown
    with pytest.raises(LsfaError, match="quantize"):
        load_config(overrides={"quantize": "2bit"})


def test_flash_attention_without_the_package_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setattr(attention_module, "flash_attention_available", lambda: False)
    with pytest.raises(LsfaError, match="pip install flash-attn") as error:
        check_implementation("flash_attention_2", "full")
    assert "\n" not in str(error.value)
    check_implementation("sdpa", "groups=4:1010")  # other kernels are not this guard's business


def test_flash_attention_runs_full_and_causal_but_not_layer_subsets(monkeypatch):
    monkeypatch.setattr(attention_module, "flash_attention_available", lambda: True)
    for setting in ("full", "causal", "ls-fa"):
        check_implementation("flash_attention_2", setting)
    with pytest.raises(LsfaError, match="use attn_implementation sdpa"):
        check_implementation("flash_attention_2", "0-3")


def test_padding_free_batches_restart_positions_and_carry_no_mask():
    features = [
        {"input_ids": [5, 6, 7], "labels": [1, -100, 0]},
        {"input_ids": [8, 9], "labels": [2, 3]},
        {"input_ids": [10, 11, 12, 13], "labels": [0, 0, 1, -100]},
    ]
    batch = FlatteningCollator()(features)
    assert set(batch) == {"input_ids", "position_ids", "labels"}  # no attention_mask: FlashAttention takes none
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 12, 13]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert batch["labels"].tolist() == [[1, -100, 0, 2, 3, 0, 0, 1, -100]]


def test_flash_attention_models_get_the_padding_free_collator():
    flash = SimpleNamespace(config=SimpleNamespace(_attn_implementation="flash_attention_2"))
    collator, batching = packing_collator(flash, 0, [3, 4])
    assert isinstance(collator, FlatteningCollator) and "padding-free" in batching


@pytest.mark.parametrize("sharding", ["is_fsdp_enabled", "is_deepspeed_enabled"])
def test_sharded_training_is_refused_in_one_line(sharding):
    with pytest.raises(LsfaError, match="not supported: lsfa trains data-parallel"):
        refuse_sharded_training(SimpleNamespace(**{sharding: True}))
    refuse_sharded_training(SimpleNamespace(is_fsdp_enabled=False, is_deepspeed_enabled=False))


def test_fp16_needs_cuda_and_checkpointing_reaches_the_trainer(tmp_path):
    if not torch.cuda.is_available():
        with pytest.raises(LsfaError, match="fp16 trains on a CUDA GPU only"):
            check_training_precision("fp16")
    config = load_config(overrides={"gradient_checkpointing": True})
    args = training_arguments(config, "fp32", tmp_path)
    assert args.activation_checkpointing and args.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert not args.fp16


def test_half_builds_only_where_the_checkpoint_is_stored_half():
    stored_bf16 = SimpleNamespace(dtype=torch.bfloat16, get_text_config=lambda: None)
    stored_fp32 = SimpleNamespace(dtype="float32", get_text_config=lambda: None)
    assert training_load_dtype(stored_bf16, "bf16", "lora") is torch.bfloat16
    assert training_load_dtype(stored_bf16, "fp16", "lora") is torch.float32  # bf16 -> fp16 would round
    assert training_load_dtype(stored_bf16, "bf16", "full") is torch.float32  # fp32 master weights
    assert training_load_dtype(stored_bf16, "bf16", "lora", save_merged=True) is torch.float32
    assert training_load_dtype(stored_fp32, "bf16", "lora") is torch.float32
    assert training_load_dtype(stored_bf16, "fp32", "lora", quantize="4bit") is torch.bfloat16


def test_weights_are_built_on_this_rank_s_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_map() is None and device_map("cpu") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert device_map() == {"": torch.device("cuda", 3)}


def test_a_half_build_keeps_the_mixed_precision_layout(tmp_path):
    """Built in bf16 from a bf16 checkpoint, a LoRA model ends with the frozen projections in bf16 (as
    cast_frozen_linear_weights leaves them) and everything else in fp32, with the stored values unchanged."""
    from lsfa.models.classifier import apply_lora, build_token_classifier

    folder = tiny_decoder_dir(tmp_path / "fp32", "llama")
    reference = build_token_classifier(folder, ["O", "B-X", "I-X"], "full")
    reference.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    (tmp_path / "bf16" / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    model = build_token_classifier(tmp_path / "bf16", ["O", "B-X", "I-X"], "full", dtype=torch.bfloat16)
    model = apply_lora(model, r=4, alpha=8)
    raise_to_fp32_but_frozen_linear(model)
    layer = model.base_model.model.model.layers[0]
    assert layer.self_attn.q_proj.base_layer.weight.dtype == torch.bfloat16
    assert layer.self_attn.q_proj.lora_A["default"].weight.dtype == torch.float32
    assert layer.input_layernorm.weight.dtype == torch.float32
    embedding = model.base_model.model.model.embed_tokens.weight
    assert embedding.dtype == torch.float32
    assert torch.equal(embedding, reference.model.embed_tokens.weight.to(torch.bfloat16).float())
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def test_the_estimate_counts_exactly_what_the_model_holds(tmp_path):
    from lsfa.models.classifier import build_token_classifier

    folder = tiny_decoder_dir(tmp_path / "tiny", "llama")
    counts = count_on_meta_device(folder)
    real = build_token_classifier(folder, [str(k) for k in range(9)], "full")
    assert counts.total == sum(p.numel() for p in real.parameters())
    assert counts.linear == sum(m.weight.numel() for n, m in real.named_modules()
                                if isinstance(m, torch.nn.Linear) and not n.startswith("score"))  # fmt: skip


def test_an_8b_llama_qlora_run_is_planned_within_24_gb(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    counts = count_on_meta_device(tmp_path)
    assert 7.4e9 < counts.total < 7.6e9  # 8.03B less the 0.53B LM head a token classifier does not have
    rows = {(row.use, row.recipe): row for row in estimates(counts, batch_size=8, max_length=256, checkpointing=True)}
    assert rows["train", "QLoRA 4bit"].total < 24 * GIB < rows["train", "LoRA fp32"].total
    embeddings_and_norms = counts.total - counts.linear - counts.head  # fp32 beside the bf16 frozen projections
    assert rows["train", "LoRA bf16/fp16"].weights == 2 * (counts.linear + counts.head) + 4 * embeddings_and_norms
    assert rows["train", "full fp32"].total > 100 * GIB


def test_the_estimate_command_prints_a_table(tmp_path):
    from typer.testing import CliRunner

    from lsfa.cli import app

    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B))
    result = CliRunner().invoke(app, ["models", "estimate", str(tmp_path), "--gradient-checkpointing"])
    assert result.exit_code == 0, result.output
    assert "QLoRA 4bit" in result.output and "7.5" in result.output.splitlines()[0]
