"""Measure batch-of-one latency for published cells that finished before runs measured it themselves.

    python scripts/backfill_latency.py PUBLISHED_CELLS_DIR RUN_GRID_DIR [RUN_GRID_DIR ...]

For every published cell (``PUBLISHED_CELLS_DIR/<key>/metrics.json``) whose test split has no
``latency_ms``, the run folder with the same key under one of the RUN_GRID_DIRs (still holding the trained
tagger in ``model/`` or spaCy's ``spacy/output/model-best``) is loaded and the first sentences of the test
split are tagged one at a time, exactly as a run does at its end since ``lsfa.inference.latency`` exists
(same precision, same max_length, the trained LoRA unmerged). The result goes into the published
``metrics.json`` with ``measured_later`` (commit, date, machine, threads), so it is never mistaken for a
timing taken during the run. Cells with document context, or without their run folder, are listed and left.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from lsfa.baselines.spacy_peer import spacy_latency
from lsfa.data.corpora import load_split
from lsfa.inference.latency import tagger_latency
from lsfa.models.saving import load_tagger
from lsfa.runs import machine_info


def tagger_run_latency(run: Path, metrics: dict, sentences) -> dict | None:
    model, tokenizer, meta = load_tagger(run / "model")
    max_length = metrics["config"].get("max_length") or meta.max_length
    return tagger_latency(model, tokenizer, [s.tokens for s in sentences], max_length, metrics.get("precision", "fp32"))


def main(published: Path, run_roots: list[Path]) -> None:
    torch.set_num_threads(1)
    machine = machine_info()
    for path in sorted(published.rglob("metrics.json")):
        key = path.parent.relative_to(published)
        metrics = json.loads(path.read_text())
        test = metrics.get("test") or {}
        config = metrics.get("config") or {}
        if "latency_ms" in test or not test:
            continue
        if config.get("context", "sentence") != "sentence":
            print(f"{key}: document context, left")
            continue
        run = next((root / key for root in run_roots if (root / key).is_dir()), None)
        if run is None:
            print(f"{key}: no run folder, left")
            continue
        sentences = load_split(config["corpus"], config.get("test_split") or "test", data_dir=config.get("data_dir"))
        sentences = sentences.sentences
        start = time.perf_counter()
        if metrics.get("system") == "spacy":
            import spacy

            latency = spacy_latency(spacy.load(run / "spacy" / "output" / "model-best"), sentences)
        elif (run / "model").is_dir():
            latency = tagger_run_latency(run, metrics, sentences)
        else:
            print(f"{key}: no saved model, left")
            continue
        latency["measured_later"] = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": machine.get("git_commit"),
            "cpu_model": machine.get("cpu_model"),
            "torch_threads": torch.get_num_threads(),
        }
        test["latency_ms"] = latency
        path.write_text(json.dumps(metrics, indent=2) + "\n")
        seconds = time.perf_counter() - start
        print(f"{key}: {latency['mean']:.1f} ± {latency['std']:.1f} ms over {latency['n']} sentences ({seconds:.0f} s)")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]])
