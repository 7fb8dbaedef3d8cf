"""Write the tags of a CoNLL prediction file without its words: one predicted tag per line, a blank line after
each sentence (documents markers dropped). What we publish of runs on corpora whose text we may not
republish; the sentences align one to one with the corpus split the run scored.

    python scripts/tags_only.py predictions/test.conll test.tags
"""

import sys

from lsfa.data.conll import read_conll

source, target = sys.argv[1], sys.argv[2]
with open(target, "w", encoding="utf-8", newline="\n") as out:
    for sentence in read_conll(source, task="tokens").sentences:  # tags as written, any task
        out.write("".join(f"{tag}\n" for tag in sentence.tags) + "\n")
