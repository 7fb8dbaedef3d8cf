"""Resident memory of a tagger under a long stream of mixed-size batches, in-process (no HTTP).

Why: a bf16 server's memory grew from 1.15 to 5.71 GB in an hour of load and was never given back, while an
fp32 server returned to 1.24 GB (issue #20). Run the same stream under different settings to find which cache
holds the memory, e.g.:

    python bench/memory_probe.py --model-dir RUN/model --precision bf16 --batches 300
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=16 python bench/memory_probe.py --model-dir RUN/model --precision bf16
    python bench/memory_probe.py --model-dir RUN/model --precision bf16 --pad-to-multiple-of 32
    python bench/memory_probe.py --model-dir RUN/model --precision bf16 --trim        # glibc malloc_trim
    python bench/memory_probe.py --model-dir RUN/model --precision fp32

The tagger runs with the server's inference options (packed rows, the server's token budget); batches are 1-32
texts drawn from bench/load_test.py's mixed-size pool, so batch shapes vary as they do under load. Prints one
JSON object: resident MB after the first batch, every ``--every`` batches, at the end and after ``--idle`` s.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import build_pool, machine, rss_mb


def malloc_trim() -> None:
    """Hand freed heap pages back to the OS (glibc only; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--trim", action="store_true", help="Call malloc_trim(0) after every batch.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pad-to-multiple-of", type=int, help="Round batch widths up (InferenceOptions).")
    parser.add_argument("--max-texts", type=int, default=32, help="Texts per batch: 1 to this many.")
    parser.add_argument("--mix", default="standard", help="Text sizes, as in bench/load_test.py.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from lsfa.inference.server import server_inference_options
    from lsfa.inference.tagger import Tagger

    torch.set_num_threads(args.threads)
    options = server_inference_options(precision=args.precision, pad_to_multiple_of=args.pad_to_multiple_of)
    tagger = Tagger.load(args.model_dir, options)
    pool = build_pool(args.seed, 400, args.mix)
    rng = random.Random(args.seed)
    readings: list[tuple[int, float | None]] = []
    pid = os.getpid()
    start = time.perf_counter()
    texts_done = 0
    for batch in range(1, args.batches + 1):
        texts = rng.sample(pool, rng.randint(1, args.max_texts))
        list(tagger.pipe(texts))
        texts_done += len(texts)
        if args.trim:
            malloc_trim()
        if batch == 1 or batch % args.every == 0 or batch == args.batches:
            readings.append((batch, rss_mb(pid)))
            print(f"batch {batch}: {readings[-1][1]} MB", file=sys.stderr)
    seconds = time.perf_counter() - start
    time.sleep(args.idle)
    report = {
        "machine": machine(),
        "settings": {**vars(args), "model_dir": str(args.model_dir)},
        "environment": {k: v for k, v in os.environ.items() if k.startswith(("ONEDNN", "DNNL", "MALLOC", "LSFA_BF16"))},
        "texts": texts_done,
        "seconds": round(seconds, 1),
        "rss_mb": readings,
        "rss_after_idle_mb": rss_mb(pid),
        "growth_mb_after_first_batch": round((readings[-1][1] or 0) - (readings[0][1] or 0), 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
