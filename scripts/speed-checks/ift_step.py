"""How much faster is an IFT training step with packed batches and the answer-only loss? (issue #12, priority 4)

    python scripts/speed-checks/ift_step.py [CORPUS] [BATCHES]

Builds the IFT baseline twice on smollm2-135m with the grid's LoRA (r 32, alpha 64, dropout 0.05, all linear):
as the IFT trainer ran before (padded batches, the model's own loss over the whole vocabulary at every
position, torch's dropout) and as it runs now (packed batches, the vocabulary projection on the answer tokens
only, lsfa's fast dropout). Both train on the same BATCHES (12) random batches of 16 examples of CORPUS
(conll2003) train, one thread, fp32, forward + backward + AdamW step; the two are interleaved batch by batch so
that a busy machine slows both alike. Prints seconds per batch, tokens computed and the ratio.
"""

import platform
import random
import statistics
import subprocess
import sys
import time

import torch

from lsfa.baselines.ift_train import (
    answer_only_loss,
    apply_causal_lora,
    encode_sentences_for_ift,
    ift_collator,
    load_causal_lm,
)
from lsfa.data.corpora import load_corpus
from lsfa.data.schemes import entity_types
from lsfa.machine import cpu_model
from lsfa.training.config import load_config
from lsfa.training.kernels import training_attention_context, use_fast_lora_dropout

BATCH = 16


def build(new: bool, corpus: str):
    config = load_config(None, {"model": "smollm2-135m", "corpus": corpus, "precision": "fp32"})
    torch.manual_seed(0)
    model, tokenizer = load_causal_lm(config)
    model = apply_causal_lora(model, config)
    if new:
        use_fast_lora_dropout(model)
    model.train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, fused=True)
    return model, tokenizer, optimiser


def step(model, optimiser, batch, new: bool) -> float:
    start = time.perf_counter()
    with training_attention_context(batch["input_ids"].shape[-1], torch.device("cpu"), "fast"):
        loss = answer_only_loss(model.get_base_model(), batch) if new else model(**batch).loss
        loss.backward()
    optimiser.step()
    optimiser.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    corpus = sys.argv[1] if len(sys.argv) > 1 else "conll2003"
    n_batches = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    torch.set_num_threads(1)
    data = load_corpus(corpus, splits=["train"])
    types = entity_types(data.label_list())
    systems = {new: build(new, corpus) for new in (False, True)}
    tokenizer = systems[False][1]
    rows, _ = encode_sentences_for_ift(tokenizer, data["train"].sentences, types, 512)
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    batches = [[dict(rows[k]) for k in order[i * BATCH : (i + 1) * BATCH]] for i in range(n_batches + 1)]
    seconds = {False: [], True: []}
    tokens = {False: 0, True: 0}
    for index, examples in enumerate(batches):
        for new in (False, True):
            model, _, optimiser = systems[new]
            collator, _ = ift_collator(model, tokenizer, rows, pack=new)
            batch = collator([dict(example) for example in examples])
            elapsed = step(model, optimiser, batch, new)
            if index:  # the first batch warms up kernels and allocators
                seconds[new].append(elapsed)
                tokens[new] += batch["input_ids"].numel()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# {cpu_model()} ({platform.machine()}), torch {torch.__version__}, commit {commit}, 1 thread, fp32")
    print(f"# {corpus} train, {n_batches} random batches of {BATCH} examples, forward + backward + AdamW step")
    for new, name in ((False, "before: padded, full-vocabulary loss"), (True, "now: packed, answer-only loss")):
        print(f"{name:40s} {statistics.median(seconds[new]):6.2f} s/batch (median), {tokens[new]:7d} tokens computed")
    ratio = statistics.median(a / b for a, b in zip(seconds[False], seconds[True], strict=True))
    print(f"speed-up (median of per-batch ratios): {ratio:.2f}x")


if __name__ == "__main__":
    main()
