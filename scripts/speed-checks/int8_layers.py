"""Which linear layers can int8 quantise without losing F1? (issue #16; lsfa.models.optimise.INT8_KEEP_FP32)

    python scripts/speed-checks/int8_layers.py MODEL_DIR [SENTENCES]

Tags the first SENTENCES (400) CoNLL-2003 dev sentences with the tagger in fp32, then with torch's dynamic int8
quantisation of every linear layer except the excluded ones (``quantise_int8(model, keep_fp32=...)``, given
explicitly so every setting is measured the same way whatever lsfa's default excludes), one thread, argmax
decoding; prints strict F1 and sentences/s per setting.
"""

import platform
import subprocess
import sys
import time

import torch

from lsfa.data.corpora import load_split
from lsfa.eval.metrics import strict_prf
from lsfa.inference.tagger import Tagger
from lsfa.machine import cpu_model
from lsfa.models.optimise import quantise_int8

SETTINGS = (None, (), ("score",), ("down_proj",), ("down_proj", "score"), ("down_proj", "o_proj", "score"))


def main() -> None:
    model_dir, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 400
    torch.set_num_threads(1)
    sentences = [s for s in load_split("conll2003", "dev").sentences if s.tokens][:n]
    words, gold = [s.tokens for s in sentences], [s.tags for s in sentences]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# {cpu_model() or platform.processor()}, torch {torch.__version__}, commit {commit}, {when}")
    print(f"# {model_dir}, CoNLL-2003 dev[:{n}], 1 thread")
    print("# int8 except | strict F1 | sentences/s")
    for excluded in SETTINGS:
        tagger = Tagger.load(model_dir, precision="fp32", decoding="argmax")
        if excluded is not None:
            tagger.model = quantise_int8(tagger.model, keep_fp32=excluded)
        start = time.perf_counter()
        predicted = tagger.predict_words(words).tags
        seconds = time.perf_counter() - start
        name = "fp32 (no int8)" if excluded is None else ",".join(excluded) or "(nothing)"
        f1 = strict_prf(gold, predicted)["micro"]["f1"]
        print(f"{name} | {f1:.4f} | {len(words) / seconds:.1f}", flush=True)


if __name__ == "__main__":
    main()
