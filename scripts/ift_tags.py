"""Publish an IFT run's answers without words: tags laid onto each sentence's words, and how exact that is.

The generative baseline answers with (entity, type) pairs, not positions, and its predictions file holds the
sentence text, which is not republished. This writes what a tagger's runs publish, one predicted tag per line
and a blank line after each sentence (every occurrence of an answered entity marked, longest first), plus
``<out>.json``: the pairs placed, those matching no words of their sentence, those hidden by an overlap, and
the set-based P/R/F1 of the placed pairs beside the run's own (which counts every answered pair).

    python scripts/ift_tags.py RUN/predictions/test.jsonl OUT/test.tags
"""

import json
import sys
from pathlib import Path

from lsfa.baselines.ift import place_entities
from lsfa.eval.metrics import entity_set, set_prf

source, target = Path(sys.argv[1]), Path(sys.argv[2])
records = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
counts = {"sentences": len(records), "answered_pairs": 0, "placed": 0, "not_in_sentence": 0, "overlapping": 0}
gold_sets, answered_sets, placed_sets = [], [], []
with target.open("w", encoding="utf-8", newline="\n") as out:
    for record in records:
        tokens = record["sentence"].split(" ")
        answered = {tuple(pair) for pair in record["predicted"]}
        placement = place_entities(tokens, answered)
        out.write("".join(f"{tag}\n" for tag in placement.tags) + "\n")
        counts["answered_pairs"] += len(answered)
        for key in ("placed", "not_in_sentence", "overlapping"):
            counts[key] += getattr(placement, key)
        gold_sets.append({tuple(pair) for pair in record["gold"]})
        answered_sets.append(answered)
        placed_sets.append(entity_set(tokens, placement.tags))
summary = {
    **counts,
    "set_of_answers": set_prf(gold_sets, answered_sets),
    "set_of_placed_tags": set_prf(gold_sets, placed_sets),
}
Path(f"{target}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
print(json.dumps(summary))
