"""Plain data types shared by every part of lsfa.

A :class:`Sentence` is a list of words with one tag per word; everything else (readers, taggers,
metrics) speaks in these terms, so evaluation never depends on how a model tokenises.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sentence:
    """One sentence: words, their tags, and where it came from.

    ``extra`` holds the other columns of a CoNLL file per word (e.g. POS and chunk in CoNLL-2003) so a
    file can be written back unchanged; ``doc_id`` numbers documents within a file (``-DOCSTART-``
    boundaries), ``line`` is the 1-based line number of the first word in the source file (0 if unknown).
    """

    tokens: list[str]
    tags: list[str]
    extra: list[list[str]] = field(default_factory=list)
    doc_id: int = 0
    line: int = 0

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.tags):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.tags)} tags")

    def __len__(self) -> int:
        return len(self.tokens)
