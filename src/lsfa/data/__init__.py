"""lsfa.data: reading corpora into :class:`Sentence` lists, tag schemes, and corpus statistics.

The common entry points are re-exported here; :mod:`lsfa.data.stats` is not, because it pulls in rich.
"""

from lsfa.data.conll import ConllFile, iter_documents, read_conll, write_conll
from lsfa.data.corpora import CORPORA, Corpus, load_corpus, load_split
from lsfa.data.types import Sentence

__all__ = [
    "CORPORA",
    "ConllFile",
    "Corpus",
    "Sentence",
    "iter_documents",
    "load_corpus",
    "load_split",
    "read_conll",
    "write_conll",
]
