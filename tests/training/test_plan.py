"""`lsfa plan` (lsfa.training.plan over lsfa.models.estimate): a training config's memory per GPU from a config.json
alone. The byte counts are checked against real tiny models (what the plan calls weights and adapters is what the
model holds, parameter for parameter), the config keys against what they change, and the 8B Llama of the issue
against a 24 GiB card."""

from __future__ import annotations

import json

import pytest
import torch

from lsfa.models.classifier import apply_lora, build_token_classifier
from lsfa.models.estimate import GIB, Recipe, autocast_copies
from lsfa.models.optimise import cast_frozen_linear_weights
from lsfa.training.config import load_config, parse_overrides
from lsfa.training.plan import plan_run, render_plan
from tests.tiny import tiny_decoder_dir
from tests.training.test_large_models import LLAMA_8B


@pytest.fixture(scope="module")
def llama_8b(tmp_path_factory):
    """A folder holding only Llama-3.1-8B's config.json (no weights, no tokenizer)."""
    folder = tmp_path_factory.mktemp("llama-8b")
    (folder / "config.json").write_text(json.dumps(LLAMA_8B))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_decoder_dir(tmp_path_factory.mktemp("tiny") / "llama", "llama")


def plan_of(*flags: str, target: str = "cuda-bf16", memory: float = 24.0):
    return plan_run(load_config(overrides=parse_overrides(list(flags))), target, memory)


def test_an_8b_llama_lsfa_qlora_run_is_planned_within_24_gib(llama_8b):
    model = ["--model", str(llama_8b), "--batch-size", "8", "--max-length", "256"]
    plan = plan_of(*model, "--quantize", "4bit", "--gradient-checkpointing")
    assert plan.fits and plan.precision == "bf16" and plan.storage == "4bit"
    assert 5 * GIB < plan.estimate.weights < 6 * GIB  # 6.98B nf4 linear weights + 0.53B fp32 embeddings and norms
    unchecked = plan_of(*model, "--quantize", "4bit")
    assert not unchecked.fits  # 27 GiB of activations: what transformers' layers save at 8 x 256 without it
    assert plan.estimate.activations < unchecked.estimate.activations / 8
    assert plan.activations_other == unchecked.estimate.activations  # the other choice, printed beside
    assert not plan_of(*model).fits  # LoRA over the bf16 base, no checkpointing
    full = plan_of(*model, "--mode", "full", "--precision", "fp32")
    assert full.total > 100 * GIB and full.estimate.adapter == 0


def test_the_parts_add_up_to_the_total_and_the_verdict(llama_8b):
    plan = plan_of("--model", str(llama_8b), "--quantize", "4bit", "--max-length", "256", memory=8)
    estimate = plan.estimate
    parts = estimate.weights + estimate.adapter + estimate.gradients + estimate.optimiser + estimate.activations
    assert plan.total == pytest.approx(parts + 1.5 * GIB)  # the CUDA reserve
    trainable = estimate.trainable_parameters
    assert (estimate.adapter, estimate.gradients, estimate.optimiser) == (4 * trainable, 4 * trainable, 8 * trainable)
    text = render_plan(plan)
    assert text.splitlines()[-1].startswith(f"total {plan.total / GIB:.2f} GiB per GPU: does NOT fit in 8 GiB")


def test_lora_weights_and_adapters_are_what_the_real_model_holds(tiny):
    """fp32 LoRA, and LoRA under bf16 autocast (frozen linear weights cast to bf16, the rest fp32): the plan's weights
    plus adapter equal the bytes of every parameter, and its trainable count is peft's."""
    model = apply_lora(build_token_classifier(tiny, [str(k) for k in range(9)], "full"), 8, 16, 0.0, "all-linear")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for precision in ("fp32", "bf16"):
        if precision == "bf16":
            cast_frozen_linear_weights(model, torch.bfloat16)
        held = sum(p.numel() * p.element_size() for p in model.parameters())
        plan = plan_of("--model", str(tiny), "--lora-r", "8", "--precision", precision)
        assert plan.estimate.trainable_parameters == trainable
        assert plan.estimate.weights + plan.estimate.adapter == held, precision


def test_full_fine_tuning_trains_every_parameter(tiny):
    model = build_token_classifier(tiny, [str(k) for k in range(9)], "full")
    plan = plan_of("--model", str(tiny), "--mode", "full", "--precision", "bf16")
    assert plan.estimate.trainable_parameters == sum(p.numel() for p in model.parameters())
    assert plan.estimate.weights == 4 * plan.estimate.trainable_parameters  # fp32 masters under bf16 autocast too
    lora = Recipe("train", "lora", activation_bytes=2)
    full = Recipe("train", "full", mode="full", activation_bytes=2)
    assert autocast_copies(plan.counts, full) == 2 * plan.counts.linear  # the bf16 copies autocast saves
    assert autocast_copies(plan.counts, lora) == 0  # LoRA's frozen weights are cast once, in place


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_activations_are_the_tensors_a_real_fp32_step_saves(tiny, mode):
    """The meta-device count of a one- and a two-layer copy, scaled to the model's layers, equals the bytes autograd
    saves in a real fp32 forward pass of the tiny model (parameters excluded; CPU SDPA saves what fused kernels do)."""
    model = build_token_classifier(tiny, [str(k) for k in range(9)], "full")
    if mode == "lora":
        model = apply_lora(model, 32, 64, 0.05, "all-linear")
    model.train()
    own = {tensor.untyped_storage().data_ptr() for tensor in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def keep(tensor):
        if tensor.untyped_storage().data_ptr() not in own:
            saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    ids = torch.randint(0, 200, (4, 96))
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model(input_ids=ids, labels=torch.zeros_like(ids))
    plan = plan_of(
        "--model", str(tiny), "--mode", mode, "--precision", "fp32", "--batch-size", "4", "--max-length", "96"
    )
    assert plan.estimate.activations == pytest.approx(sum(saved.values()), rel=5e-3)


def test_config_keys_change_what_they_should(llama_8b):
    base = plan_of("--model", str(llama_8b), "--quantize", "4bit")
    assert plan_of("--model", str(llama_8b), "--quantize", "4bit", "--layers", "16").counts.layers == 16
    rank_8 = plan_of("--model", str(llama_8b), "--quantize", "4bit", "--lora-r", "8")
    assert rank_8.estimate.adapter == pytest.approx(base.estimate.adapter / 4, rel=0.01)  # the head does not shrink
    attention_only = plan_of("--model", str(llama_8b), "--quantize", "4bit", "--lora-target-modules", "q_proj,v_proj")
    assert attention_only.estimate.trainable_parameters < base.estimate.trainable_parameters
    assert plan_of("--model", str(llama_8b), "--quantize", "8bit").estimate.weights > base.estimate.weights
    assert plan_of("--model", str(llama_8b), "--batch-size", "16", "--quantize", "4bit").estimate.activations == (
        pytest.approx(2 * base.estimate.activations, rel=1e-3)
    )


def test_auto_is_what_the_target_card_picks_and_fp32_checkpoints_load_in_fp32_first(tiny, llama_8b):
    assert plan_of("--model", str(llama_8b), target="cuda-fp16").precision == "fp16"
    fp32, bf16 = (plan_of("--model", str(llama_8b), "--precision", name).estimate for name in ("fp32", "bf16"))
    assert bf16.activations < fp32.activations < 2 * bf16.activations  # norms save fp32 tensors in either
    assert plan_of("--model", str(llama_8b)).estimate.loading == 0  # stored bf16: built in bf16
    stored_fp32 = plan_of("--model", str(tiny), "--precision", "bf16")  # tests.tiny saves fp32 weights
    assert stored_fp32.estimate.loading > stored_fp32.estimate.weights and stored_fp32.notes
    assert plan_of("--model", str(tiny), "--precision", "fp32", target="cpu").reserve_gib == 0


def test_lsfa_plan_takes_a_config_file_and_training_flags(run, tmp_path, llama_8b):
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {llama_8b}\nquantize: 4bit\nbatch_size: 8\nmax_length: 256\n")
    code, out, err = run(["plan", "-c", str(config), "--gradient-checkpointing", "--gpu-memory", "24"])
    assert code == 0, err
    assert "QLoRA r32" in out and "checkpointing on" in out
    assert out.strip().splitlines()[-1].startswith("total ") and "fits in 24 GiB" in out
    code, out, _ = run(["plan", "-c", str(config), "--gradient-checkpointing", "--json"])
    assert code == 0 and json.loads(out)["fits"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "tpu"], "--target tpu: use one of"),
        (["--gpu-memory", "0"], "--gpu-memory 0.0: must be a positive"),
        (["--bogus", "1"], "unknown option '--bogus'"),
        (["--precision", "fp16", "--target", "cpu"], "fp16 trains on a CUDA GPU only"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(run, llama_8b, args, message):
    code, _, err = run(["plan", "--model", str(llama_8b), *args])
    assert code == 2 and message in err and "Traceback" not in err


def test_a_hub_id_not_in_the_offline_cache_is_one_line(run, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(["plan", "--model", "no-such-org/no-such-model-lsfa-test"])
    assert code == 2 and "HF_HUB_OFFLINE" in err and len(err.strip().splitlines()) == 1
