"""A spaCy training logger, loaded by ``spacy train --code`` (see :mod:`lsfa.baselines.spacy_peer`).

spaCy's console logger shows epochs and steps but no clock, and epochs are not reported at their end,
only at each dev evaluation. To put spaCy's training time per epoch beside lsfa's (Table 6), this logger
keeps spaCy's console output and also appends one JSON line per evaluation with the seconds since
training started and the number of training words seen so far; seconds per epoch is then
``seconds * train_words / words_seen``. This file imports only spaCy, because spaCy imports it by path.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import spacy
from spacy.training.loggers import console_logger_v3


@spacy.registry.loggers("lsfa.ProgressLogger.v1")
def progress_logger(path: str, console_output: bool = True):
    """spaCy's ConsoleLogger.v3 plus ``{epoch, step, words, seconds, score, scores}`` lines in ``path``."""
    console = console_logger_v3(progress_bar=None, console_output=console_output, output_file=None)

    def setup(nlp: Any, stdout=sys.stdout, stderr=sys.stderr):
        log_step, finalize = console(nlp, stdout, stderr)
        start = time.perf_counter()
        stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by finalize

        def step(info: dict[str, Any] | None) -> None:
            log_step(info)
            if info is None:
                return
            scores = {k: float(v) for k, v in (info.get("other_scores") or {}).items() if isinstance(v, int | float)}
            row = {
                "epoch": info["epoch"],
                "step": info["step"],
                "words": info["words"],
                "seconds": time.perf_counter() - start,
                "score": float(info["score"]),
                "scores": scores,
            }
            stream.write(json.dumps(row) + "\n")
            stream.flush()

        def done() -> None:
            finalize()
            stream.close()

        return step, done

    return setup
