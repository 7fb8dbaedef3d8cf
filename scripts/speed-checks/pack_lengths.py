"""Inference speed by pack length and token budget (bf16-full, packed rows), interleaved rounds.

python scripts/speed-checks/pack_lengths.py THREADS SENTENCES
"""

import sys
import time

import torch

from lsfa.data.corpora import load_split
from lsfa.inference.predictor import predict_words
from lsfa.inference.tagger import Tagger

torch.set_num_threads(int(sys.argv[1]))
count = int(sys.argv[2])
tagger = Tagger.load("runs/conll2003-lsfa-lora/model", precision="bf16-full")
sentences = [s.tokens for s in load_split("conll2003", "test").sentences[:count]]
plans = [(4096, 256), (4096, 128), (4096, 96), (4096, 64), (4096, 48), (2048, 64), (8192, 64)]
seconds = {plan: [] for plan in plans}
for _ in range(3):
    for budget, pack_tokens in plans:
        start = time.perf_counter()
        predict_words(
            tagger.model,
            tagger.tokenizer,
            sentences,
            precision="bf16-full",
            max_batch_tokens=budget,
            pack=True,
            pack_tokens=pack_tokens,
        )
        seconds[(budget, pack_tokens)].append(time.perf_counter() - start)
for (budget, pack_tokens), times in seconds.items():
    print(f"budget {budget:5d}, pack {pack_tokens:3d}: {count / min(times):6.1f} sentences/s (best of 3)")
