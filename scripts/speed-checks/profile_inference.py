"""Where the optimised inference path spends its time (torch profiler, operator table).

    python scripts/speed-checks/profile_inference.py THREADS MAX_BATCH_TOKENS PACK_TOKENS [PRECISION]

Tags the first 400 CoNLL-2003 test sentences with runs/conll2003-lsfa-lora/model (packed rows); prints the
wall time and the operators sorted by their own CPU time. Used in docs/results/performance.md.
"""

import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from lsfa.data.corpora import load_split
from lsfa.inference.predictor import predict_words
from lsfa.inference.tagger import Tagger

threads, budget, pack_tokens = (int(x) for x in sys.argv[1:4])
precision = sys.argv[4] if len(sys.argv) > 4 else "bf16"
torch.set_num_threads(threads)
tagger = Tagger.load("runs/conll2003-lsfa-lora/model", precision=precision)
sentences = [s.tokens for s in load_split("conll2003", "test").sentences[:400]]


def run():
    return predict_words(
        tagger.model,
        tagger.tokenizer,
        sentences,
        precision=precision,
        max_batch_tokens=budget,
        pack=True,
        pack_tokens=pack_tokens,
    )


run()
start = time.perf_counter()
run()
print(f"threads {threads}, budget {budget}, pack {pack_tokens}, {precision}: {time.perf_counter() - start:.2f} s")
with profile(activities=[ProfilerActivity.CPU]) as prof:
    run()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
