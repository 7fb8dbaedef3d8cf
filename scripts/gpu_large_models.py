"""The large-model paths of issue #35 on a real GPU, in a few minutes, hub-free: writes one JSON of what worked.

Run by scripts/gpu-check.sh (``python scripts/gpu_large_models.py OUT.json``). It needs only what a bare GPU image
has (torch, transformers, peft, accelerate; bitsandbytes and flash-attn where installed: their checks are
skipped, and say so, when they are not). No test-only packages: the 1B-shaped model is a random Llama built from
a config on the GPU, saved in bf16 to a scratch folder, with the tiny byte-level tokenizer of tests/tiny.py.

Checks, each recorded as {"ok": ..., ...} and never stopping the others:
  env           card, compute capability, native bf16, what `auto` picks, TF32, package versions
  lora_bf16     1B-shaped LS-FA LoRA built straight on the GPU in bf16 (checkpoint stored bf16): peak memory,
                three training steps under bf16 autocast with gradient checkpointing, losses, step time
  qlora_4bit    the same in 4-bit nf4 (quantize: 4bit): Linear4bit layers, head unquantised, peak memory, steps
  flash         FlashAttention-2 LS-FA: padded SDPA logits vs padding-free FA2 logits (flattened rows, position
                ids, no mask) on the 1B-shaped model, relative difference; full vs causal really differ
  estimate      `lsfa models estimate` of the same config beside the measured peaks
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
SHAPE_1B = {  # Llama-3.2-1B's shape, with a small vocabulary (the tiny tokenizer's): the layers are what count
    "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 64, "max_position_embeddings": 4096,
}  # fmt: skip


def record(results: dict[str, Any], name: str, check) -> None:
    """Run one check; its dict, or the error's last line and traceback, goes into ``results[name]``."""
    started = time.perf_counter()
    try:
        results[name] = {"ok": True, **check()}
    except Exception as error:  # a GPU check reports every failure and goes on
        results[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"[:500],
                         "traceback": traceback.format_exc()[-2000:]}  # fmt: skip
    results[name]["seconds"] = round(time.perf_counter() - started, 1)
    print(name, "ok" if results[name]["ok"] else results[name]["error"], flush=True)


def environment() -> dict[str, Any]:
    import transformers

    from lsfa.models.attention import flash_attention_available
    from lsfa.models.quantise import bitsandbytes_available
    from lsfa.precision import enable_tf32, resolve_precision

    device = torch.device("cuda")
    return {
        "card": torch.cuda.get_device_name(0),
        "capability": list(torch.cuda.get_device_capability(0)),
        "native_bf16": torch.cuda.is_bf16_supported(including_emulation=False),
        "auto_precision": resolve_precision("auto", device),
        "tf32_enabled": enable_tf32(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "bitsandbytes": bitsandbytes_available(),
        "flash_attn": flash_attention_available(),
    }


def build_1b(folder: Path) -> Path:
    """A random 1B-shaped Llama saved in bf16 (built on the GPU: seconds, not minutes on the host)."""
    from tests.tiny import byte_bpe_tokenizer
    from transformers import LlamaConfig, LlamaModel

    tokenizer = byte_bpe_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **SHAPE_1B,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaModel(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def train_steps(folder: Path, **settings: Any) -> dict[str, Any]:
    """lsfa's own model building (build_model) for ``settings``, then three optimiser steps on random rows."""
    from lsfa.models.quantise import quantised_layers
    from lsfa.training.config import load_config
    from lsfa.training.model import build_model

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    config = load_config(overrides={"model": str(folder), "gradient_checkpointing": True, **settings})
    model, _, _ = build_model(config, LABELS, "bf16")
    loaded = torch.cuda.max_memory_allocated()
    model.train()
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 250, (8, 128), generator=generator).cuda()
    labels = torch.randint(0, len(LABELS), (8, 128), generator=generator).cuda()
    losses, started = [], time.perf_counter()
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        losses.append(round(loss.item(), 4))
    torch.cuda.synchronize()
    head = model.base_model.model.score.modules_to_save["default"]
    facts = {
        "losses": losses, "seconds_per_step": round((time.perf_counter() - started) / 3, 3),
        "peak_after_load_gib": round(loaded / 2**30, 2),
        "peak_training_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "quantised_layers": quantised_layers(model), "head": f"{type(head).__name__} {head.weight.dtype}",
        "on_gpu": next(model.parameters()).device.type == "cuda",
    }  # fmt: skip
    del model, optimiser
    return facts


def flash_versus_sdpa(folder: Path) -> dict[str, Any]:
    """Padded SDPA logits against padding-free FA2 logits for the same rows, LS-FA; and causal must differ."""
    from lsfa.models.attention import flash_attention_available, set_attention
    from lsfa.models.classifier import build_token_classifier
    from lsfa.models.packing import flat_inputs

    if not flash_attention_available():
        return {"skipped": "flash-attn not installed (pip install flash-attn --no-build-isolation)"}
    rows = [[5, 17, 42, 8, 9, 11], [99, 23, 61], [7, 30, 12, 77, 3, 40, 41, 44]]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows]).cuda()
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]).cuda()
    outputs = {}
    for implementation in ("sdpa", "flash_attention_2"):
        model = build_token_classifier(folder, LABELS, "full", implementation, dtype=torch.bfloat16,
                                       device_map={"": torch.device("cuda")}).eval()  # fmt: skip
        with torch.no_grad():
            if implementation == "sdpa":
                logits = model(input_ids=ids, attention_mask=mask).logits
                outputs[implementation] = torch.cat([logits[k, : len(r)] for k, r in enumerate(rows)]).float()
            else:
                inputs, _ = flat_inputs(rows, torch.device("cuda"))
                outputs[implementation] = model(**inputs).logits[0].float()
                set_attention(model, "causal")
                outputs["flash_causal"] = model(**inputs).logits[0].float()
        del model
    scale = outputs["sdpa"].abs().max().item()
    return {
        "max_abs_difference_flash_vs_sdpa": (outputs["sdpa"] - outputs["flash_attention_2"]).abs().max().item(),
        "logit_scale": scale,
        "causal_differs_from_full": (outputs["flash_causal"] - outputs["flash_attention_2"]).abs().max().item(),
    }


def estimate(folder: Path) -> dict[str, Any]:
    from lsfa.models.estimate import count_on_meta_device, estimates

    counts = count_on_meta_device(folder)
    rows = estimates(counts, batch_size=8, max_length=128, lora_r=32, checkpointing=True)
    return {"parameters": counts.total, **{f"{r.use} {r.recipe}": round(r.total / 2**30, 2) for r in rows}}


def main(out: str) -> int:
    results: dict[str, Any] = {}
    if not torch.cuda.is_available():
        results["env"] = {"ok": False, "error": "no CUDA GPU"}
    else:
        record(results, "env", environment)
        scratch = Path(tempfile.mkdtemp(prefix="lsfa-1b-"))
        folder = build_1b(scratch / "llama-1b")
        record(results, "lora_bf16", lambda: train_steps(folder))
        from lsfa.models.quantise import bitsandbytes_available

        if bitsandbytes_available():
            record(results, "qlora_4bit", lambda: train_steps(folder, quantize="4bit"))
        else:
            results["qlora_4bit"] = {"ok": None, "skipped": "bitsandbytes not installed (pip install 'lsfa[quant]')"}
        record(results, "flash", lambda: flash_versus_sdpa(folder))
        record(results, "estimate", lambda: estimate(folder))
    Path(out).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(check.get("ok") is not False for check in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "gpu-large-models.json"))
