"""Two inference ideas of issue 6 measured outside `lsfa bench`: the whole model in bf16, and torch.compile.

Run from the repository root with the CoNLL-2003 tagger of docs/results/conll2003-lsfa-lora.md:
    python scripts/bf16_compile_check.py > docs/results/speed-checks/bf16-compile.txt
It times 4 interleaved forward passes of 8 rows x 256 random token ids on one thread and prints the mean
seconds per pass of: the merged model under bf16 autocast (fp32 residual stream, as lsfa predicts), the
whole model cast to bf16, and that bf16 model after ``torch.compile`` (plus the compile time), with the
share of identical argmax labels.
"""

from __future__ import annotations

import copy
import time

import torch

from lsfa.inference.tagger import Tagger

ROUNDS = 4


def forward(model, ids, autocast: bool):
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(input_ids=ids, attention_mask=mask).logits
        return model(input_ids=ids, attention_mask=mask).logits


def timed(model, ids, autocast: bool):
    start = time.perf_counter()
    logits = forward(model, ids, autocast)
    return time.perf_counter() - start, logits


def compare(first, second, ids, label: str) -> None:
    """Interleave the two (model, autocast) pairs so that machine noise hits both alike."""
    total_first = total_second = 0.0
    for _ in range(ROUNDS):
        seconds, logits_first = timed(*first, ids)
        total_first += seconds
        seconds, logits_second = timed(*second, ids)
        total_second += seconds
    agree = (logits_first.argmax(-1) == logits_second.argmax(-1)).float().mean().item()
    print(label, total_first / ROUNDS, total_second / ROUNDS, "ratio", total_first / total_second, "agree", agree)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tagger = Tagger.load("runs/conll2003-lsfa-lora/model", precision="fp32")  # merged, fp32 weights
    autocast_model = tagger.model
    bf16_model = copy.deepcopy(autocast_model).to(torch.bfloat16)
    ids = torch.randint(100, 20000, (8, 256))
    for _ in range(2):
        forward(autocast_model, ids, True)
        forward(bf16_model, ids, False)
    compare((autocast_model, True), (bf16_model, False), ids, "autocast vs whole-bf16 s:")
    compiled = torch.compile(bf16_model, dynamic=True)
    seconds, _ = timed(compiled, ids, False)
    print("compile s", seconds)
    forward(compiled, ids, False)
    compare((bf16_model, False), (compiled, False), ids, "whole-bf16 vs compiled s:")


if __name__ == "__main__":
    main()
