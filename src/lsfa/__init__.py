"""lsfa: decoder-only LLMs as bidirectional token classifiers for NER.

The package is split by concern: :mod:`lsfa.data` (corpora, CoNLL I/O, tag schemes, alignment),
:mod:`lsfa.models` (catalogue, attention control, classifiers, LoRA), :mod:`lsfa.train`,
:mod:`lsfa.eval` (span metrics, error analysis), :mod:`lsfa.infer` (predictor, server) and
:mod:`lsfa.bench`. :mod:`lsfa.cli` is a thin command-line layer over them.
"""

__version__ = "0.1.0"
