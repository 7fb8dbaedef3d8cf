"""Paired bootstrap of two systems' strict span F1 on one corpus split, from their tags-only prediction files
(scripts/tags_only.py: one tag per line, a blank line after each sentence, aligned with the split):

    python scripts/significance.py bc5cdr test A.tags B.tags [--by document] [--samples 10000] [--seed 0]

Prints one JSON object (lsfa.eval.significance.paired_bootstrap): F1 of A and B, B - A, its 95% interval and
the share of draws where B is not better. ``--by document`` resamples whole documents (their sentences share
entities; only where the corpus marks documents: CoNLL-2003 does, the BC5CDR files here do not), ``--by sentence``
(the default) single sentences.
"""

import argparse
import json
from pathlib import Path

from lsfa.data.corpora import load_split
from lsfa.eval.significance import paired_bootstrap


def read_tags(path: str) -> list[list[str]]:
    """Sentences of tags from a tags-only file (blank line between sentences)."""
    blocks = Path(path).read_text(encoding="utf-8").strip("\n").split("\n\n")
    return [block.split("\n") for block in blocks if block]


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("corpus")
parser.add_argument("split")
parser.add_argument("a", help="tags-only predictions of system A (the baseline)")
parser.add_argument("b", help="tags-only predictions of system B")
parser.add_argument("--by", choices=["sentence", "document"], default="sentence")
parser.add_argument("--samples", type=int, default=10_000)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
sentences = [s for s in load_split(args.corpus, args.split).sentences if s.tokens]
gold = [s.tags for s in sentences]
groups = [s.doc_id for s in sentences] if args.by == "document" else None
pred_a, pred_b = read_tags(args.a), read_tags(args.b)
result = paired_bootstrap(gold, pred_a, pred_b, groups=groups, samples=args.samples, seed=args.seed)
print(json.dumps({"corpus": args.corpus, "split": args.split, "a": args.a, "b": args.b, "by": args.by, **result}))
