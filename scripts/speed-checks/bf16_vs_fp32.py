"""Does bf16 pay on this CPU? Matmul GFLOP/s in fp32 and bf16, and LoRA training steps in each, interleaved.

    python scripts/speed-checks/bf16_vs_fp32.py THREADS

What ``precision: auto`` measures in miniature (lsfa.precision): a CPU with bf16 instructions is not
necessarily faster in bf16. Prints the machine line first. Training: fresh smollm2-135m LoRA taggers, the
first 800 CoNLL-2003 test sentences, batches of 8 packed, kernels fast; 4 rounds of 6 steps, alternating.
"""

import sys
import time

import torch
from training_rows import timed_rounds, training_rows

from lsfa.bench.training import TrainVariant, fresh_lora_model, prepare_variant
from lsfa.machine import machine_line
from lsfa.training.collate import packing_collator

torch.set_num_threads(int(sys.argv[1]))
print(machine_line())
left, right = torch.randn(512, 576), torch.randn(576, 1536)
for dtype in (torch.float32, torch.bfloat16):
    a, b = left.to(dtype), right.to(dtype)
    best = float("inf")
    for _ in range(30):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    print(f"matmul 512x576x1536 {dtype}: {2 * 512 * 576 * 1536 / best / 1e9:.0f} GFLOP/s (best of 30)")

rows, tokenizer, meta = training_rows(800)
lengths = [len(row.input_ids) for row in rows]
cpu = torch.device("cpu")
variants = [
    TrainVariant("fp32", "fp32", "random", 8, kernels="fast"),
    TrainVariant("bf16", "bf16", "random", 8, cast_frozen=True, kernels="fast"),
]
for variant in variants:
    model = fresh_lora_model(meta.base_model, meta.labels, meta.attention, cpu, 42)
    prepare_variant(variant, model, lengths, 42, 2e-4)
    variant.collator = packing_collator(model, tokenizer.pad_token_id, lengths)[0]
timed_rounds(variants, rows, tokenizer.pad_token_id, 4, 6, cpu)
