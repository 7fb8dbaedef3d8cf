"""Worst-case service time of one `lsfa serve` request at the default limits, measured.

    python scripts/server_worst_case.py THREADS

The default model (smollm2-135m) with an untrained head (time does not depend on trained weights), the server's
fast path and default limits; one request of max_tokens_per_request sub-tokens in four texts of
max_tokens_per_text each (words that are two or three sub-tokens), and one text at max_tokens_per_text alone.
"""

import sys
import tempfile
import time
from pathlib import Path

import torch
from fastapi.testclient import TestClient

from lsfa.inference.server import ServerSettings, create_app
from lsfa.inference.tagger import Tagger
from lsfa.machine import machine_line
from lsfa.models.catalogue import resolve_model
from lsfa.models.classifier import build_token_classifier, load_tokenizer
from lsfa.models.saving import TaggerMeta, save_tagger

torch.set_num_threads(int(sys.argv[1]))
print(machine_line())
base = resolve_model("smollm2-135m", auto_fetch=True)
labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
with tempfile.TemporaryDirectory() as folder:
    meta = TaggerMeta(base_model=str(base), model_type="llama", labels=labels, weights="full")
    save_tagger(build_token_classifier(base, labels), load_tokenizer(base), Path(folder) / "t", meta)
    tagger = Tagger.load(Path(folder) / "t", pack=True, max_batch_tokens=4096)
    settings = ServerSettings(api_key=None)
    tokenizer = tagger.tokenizer
    words = ["the", "EU", "said", "on", "Peter", "in", "Paris", "and", "a", "lamb"]
    text, count = "", 0
    while True:
        candidate = f"{text} {words[count % len(words)]}".strip()
        if len(tokenizer(candidate, add_special_tokens=False)["input_ids"]) > settings.max_tokens_per_text:
            break
        text, count = candidate, count + 1
    size = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    with TestClient(create_app(tagger, settings)) as client:
        client.post("/v1/ner", json={"texts": ["warm up"]})
        for texts in ([text], [text] * (settings.max_tokens_per_request // settings.max_tokens_per_text)):
            start = time.perf_counter()
            response = client.post("/v1/ner", json={"texts": texts})
            seconds = time.perf_counter() - start
            print(f"{len(texts)} text(s) of {size} sub-tokens ({len(text):,} characters): "
                  f"HTTP {response.status_code}, {seconds:.1f} s, precision {tagger.precision}")  # fmt: skip
