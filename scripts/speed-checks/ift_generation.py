"""How much faster is the IFT baseline's greedy decoding when the prompts' shared prefix is computed once?
(issue #12, priority 4; lsfa.baselines.ift.generate_responses(share_prefix=...))

    python scripts/speed-checks/ift_generation.py [CORPUS] [PROMPTS] [NEW_TOKENS]

Decodes the paper's prompts for the first PROMPTS (128) CORPUS (conll2003) dev sentences with smollm2-135m's
language model, batches of 32 as the grid does, one thread, fp32, at most NEW_TOKENS (16; a trained model's
CoNLL-2003 answers are about that long) new tokens, with and without the shared prefix, alternating the two
four times so that a busy machine slows both alike. Checks that both give the same answers; prints the time per
sentence (median of the four) and the ratio.
"""

import platform
import statistics
import subprocess
import sys
import time

import torch

from lsfa.baselines.ift import _shared_prefix, build_prompt, generate_responses
from lsfa.baselines.ift_train import load_causal_lm
from lsfa.data.corpora import load_corpus
from lsfa.data.schemes import entity_types
from lsfa.machine import cpu_model
from lsfa.training.config import load_config

ROUNDS = 4


def main() -> None:
    corpus = sys.argv[1] if len(sys.argv) > 1 else "conll2003"
    n_prompts = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    new_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    torch.set_num_threads(1)
    data = load_corpus(corpus, splits=["dev"])
    types = entity_types(data.label_list())
    prompts = [build_prompt(s.tokens, types) for s in data["dev"].sentences[:n_prompts]]
    model, tokenizer = load_causal_lm(load_config(None, {"model": "smollm2-135m", "precision": "fp32"}))
    encoded = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    shared = len(_shared_prefix(encoded))
    mean_prompt = sum(map(len, encoded)) / len(encoded)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    answers: dict[bool, list[str]] = {}
    for _ in range(ROUNDS):
        for share in (False, True):
            start = time.perf_counter()
            answers[share], _ = generate_responses(model, tokenizer, prompts, new_tokens, 32, "fp32", share)
            seconds[share].append(time.perf_counter() - start)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# {cpu_model()} ({platform.machine()}), torch {torch.__version__}, commit {commit}, 1 thread, fp32")
    print(f"# {corpus} dev[:{n_prompts}], paper prompt (mean {mean_prompt:.1f} tokens, {shared} shared), "
          f"batches of 32, at most {new_tokens} new tokens, {ROUNDS} rounds")  # fmt: skip
    for share, name in ((False, "full prompts"), (True, "shared prefix computed once")):
        per_sentence = 1000 * statistics.median(seconds[share]) / len(prompts)
        print(f"{name:30s} {per_sentence:7.1f} ms/sentence (median of {ROUNDS})")
    print(f"same answers: {answers[True] == answers[False]}")
    print(f"speed-up: {statistics.median(seconds[False]) / statistics.median(seconds[True]):.2f}x")


if __name__ == "__main__":
    main()
