"""Where a bf16 LoRA training step spends its time (torch profiler), with lsfa's kernels or PyTorch's.

    python scripts/speed-checks/profile_training.py THREADS KERNELS ORDER   # KERNELS fast|default, ORDER grouped|packed

Fresh smollm2-135m LoRA tagger (as `lsfa bench`), 10 profiled steps of batch 8 over the first 800 CoNLL-2003
test sentences (throughput only; the model is discarded). Used in docs/results/performance.md.
"""

import sys

import torch
from torch.profiler import ProfilerActivity, profile
from training_rows import training_rows

from lsfa.bench.training import TrainVariant, fresh_lora_model, prepare_variant, train_step
from lsfa.training.collate import packing_collator

threads, kernels, order = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(threads)
rows, tokenizer, meta = training_rows(800)
lengths = [len(row.input_ids) for row in rows]
cpu = torch.device("cpu")
variant = TrainVariant(
    "optimised", "bf16", "grouped" if order == "grouped" else "random", 8, cast_frozen=True, kernels=kernels
)
model = fresh_lora_model(meta.base_model, meta.labels, meta.attention, cpu, 42)
prepare_variant(variant, model, lengths, 42, 2e-4)
if order == "packed":
    variant.collator = packing_collator(model, tokenizer.pad_token_id, lengths)[0]
for _ in range(3):
    train_step(variant, rows, tokenizer.pad_token_id, cpu)
variant.seconds, variant.tokens = 0.0, 0
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(10):
        train_step(variant, rows, tokenizer.pad_token_id, cpu)
print(f"threads {threads}, kernels {kernels}, {order}: {variant.tokens / variant.seconds:.1f} tokens/s (profiled)")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
