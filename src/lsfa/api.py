"""The front door: train a tagger, evaluate tags or taggers, in one call each (re-exported by ``lsfa``).

    import lsfa
    tagger = lsfa.train("configs/main.yaml", epochs=1)      # -> lsfa.Tagger, saved under output_dir/model
    tagger("EU rejects German call to boycott British lamb.")
    lsfa.evaluate(tagger, corpus="conll2003", split="test")  # seqeval-strict P/R/F1 and the paper's extras

Everything else (attention control, corpora, the CLI's commands) builds on the same packages; this module
only chooses which of them a call needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lsfa.errors import LsfaError
from lsfa.eval.files import evaluate_files
from lsfa.eval.report import evaluate_sentences
from lsfa.inference.evaluate import evaluate_model
from lsfa.inference.tagger import Tagger
from lsfa.runs import MODEL_DIR
from lsfa.training.config import TrainConfig, load_config, with_overrides
from lsfa.training.time_limit import deadline_after, parse_duration


def train(
    config: TrainConfig | str | Path | None = None,
    *,
    resume: bool = False,
    time_limit: str | float | None = None,
    log: Callable[[str], None] = print,
    **overrides: Any,
) -> Tagger | None:
    """Train a tagger from a config (object, YAML path or nothing) plus keyword overrides of its keys, e.g.
    ``lsfa.train("configs/main.yaml", epochs=1, attention="causal")``; returns the selected tagger, loaded
    (``None`` on the non-zero ranks of a multi-process run). The run folder holds ``metrics.json``.

    ``time_limit`` ("2h", "115m" or seconds) stops training at a saved checkpoint once it has run that long
    and raises ``lsfa.TimeLimitReached``; call again with ``resume=True`` to continue. Under torchrun, call
    ``torch.distributed.destroy_process_group()`` on every rank when done (``lsfa train`` does), or a rank may
    abort as Python exits."""
    from lsfa.training.runner import train as run_training  # lazy: the Trainer and peft, for training only
    resolved = _config_of(config, overrides)
    deadline = deadline_after(parse_duration(time_limit, "time_limit"))
    metrics = run_training(resolved, resume=resume, log=log, deadline=deadline)
    if not metrics:
        return None
    return Tagger.load(Path(resolved.output_dir) / MODEL_DIR, precision="auto")


def _config_of(config: TrainConfig | str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return with_overrides(config, overrides)
    return load_config(config, overrides)


def evaluate(
    gold: Any,
    predicted: Any = None,
    *,
    words: Sequence[Sequence[str]] | None = None,
    corpus: str | Path | None = None,
    split: str = "test",
    scheme: str = "IOB2",
    mode: str = "strict",
    **tagger_options: Any,
) -> dict[str, Any]:
    """Score predictions the way the paper does: seqeval-strict span P/R/F1 (micro and per type) plus set-based,
    partial and by-length scores and the error taxonomy, from one of three inputs:

    - ``evaluate(gold_tags, predicted_tags, words=...)``: tag lists per sentence (``words`` for set-based F1;
      omitted, placeholder words are used and set-based F1 compares positions' words only);
    - ``evaluate("gold.conll", "pred.conll")``: two CoNLL files with the same words;
    - ``evaluate(tagger_or_folder, corpus="conll2003", split="test")``: a tagger predicts a corpus split
      (``corpus`` defaults to the one it was trained on; ``tagger_options``: precision, batch_size, data_dir).
    """
    if predicted is None:
        if isinstance(gold, (str, Path)) and Path(gold).is_file():
            raise LsfaError(f"{gold}: give the predictions to compare with (a second CoNLL file)")
        return evaluate_model(gold, corpus=corpus, split=split, mode=mode, **tagger_options)
    if tagger_options or corpus is not None:
        raise LsfaError("corpus, split and tagger options apply only when evaluating a tagger")
    if isinstance(gold, (str, Path)) and isinstance(predicted, (str, Path)):
        return evaluate_files(gold, predicted, scheme=scheme, mode=mode)
    if words is None:
        words = [["_"] * len(tags) for tags in gold]
    return evaluate_sentences(gold, predicted, words, scheme=scheme, mode=mode)
