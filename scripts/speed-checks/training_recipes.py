"""Interleaved training steps of three recipes on the same random batches: tokens/s of each.

    python scripts/speed-checks/training_recipes.py THREADS

reference (fp32, padded), packed with PyTorch's kernels, packed with lsfa's ``kernels: fast``; fresh
smollm2-135m LoRA taggers, 4 rounds of 8 steps, first 800 CoNLL-2003 test sentences (throughput only).
"""

import sys

import torch
from training_rows import timed_rounds, training_rows

from lsfa.bench.training import TrainVariant, fresh_lora_model, prepare_variant
from lsfa.training.collate import packing_collator

torch.set_num_threads(int(sys.argv[1]))
rows, tokenizer, meta = training_rows(800)
lengths = [len(row.input_ids) for row in rows]
cpu = torch.device("cpu")
variants = [
    TrainVariant("reference", "fp32", "random", 8),
    TrainVariant("packed, kernels default", "bf16", "random", 8, cast_frozen=True, kernels="default"),
    TrainVariant("packed, kernels fast", "bf16", "random", 8, cast_frozen=True, kernels="fast"),
]
for variant in variants:
    model = fresh_lora_model(meta.base_model, meta.labels, meta.attention, cpu, 42)
    prepare_variant(variant, model, lengths, 42, 2e-4)
    if variant.name != "reference":
        variant.collator = packing_collator(model, tokenizer.pad_token_id, lengths)[0]
timed_rounds(variants, rows, tokenizer.pad_token_id, 4, 8, cpu)
