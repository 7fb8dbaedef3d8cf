"""The reference paper's published numbers, as data, so that a report can put each lsfa number beside them.

Yano & Takamura (BioNLP 2026): test split, strict span micro scores (set-based where said), one run, H200,
10 epochs, lr 5e-5, batch 8. Each number belongs to a :class:`Role`, the kind of system it describes
(a decoder with LS-FA and LoRA, an encoder with full fine-tuning, the generative baseline, ...); the report
compares it with every lsfa cell in the same role, whatever its model, because the CPU grid runs smaller
models than the paper. Keeping the numbers here (not in prose) means one place to check them against the
paper and one place to add a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Measure = Literal["strict_f1", "set_f1", "time_ratio", "ms_per_sentence"]

MEASURE_NAMES: dict[str, str] = {
    "strict_f1": "strict F1",
    "set_f1": "set-based F1",
    "time_ratio": "train time per epoch / smallest encoder",
    "ms_per_sentence": "ms per sentence",
}


@dataclass(frozen=True)
class Role:
    """A kind of system, matched against a report cell's axes (``None`` matches anything)."""

    name: str
    measure: Measure
    kind: str | None = None
    training: str | None = None
    attention: str | None = None
    system: str | None = None

    def matches(self, kind: str, training: str, attention: str, system: str) -> bool:
        """Whether a cell with these axes is in this role."""
        wanted = (self.kind, self.training, self.attention, self.system)
        have = (kind, training, attention, system)
        return all(want is None or want == value for want, value in zip(wanted, have, strict=True))


@dataclass(frozen=True)
class PaperNumber:
    """One system's published value per corpus, for one role."""

    role: str
    system: str
    values: dict[str, float]


DECODER_LSFA_LORA = "decoder LS-FA, LoRA"
DECODER_LSCA_LORA = "decoder LS-CA, LoRA"
DECODER_LSFA_FULL = "decoder LS-FA, full fine-tuning"
ENCODER_FULL = "encoder, full fine-tuning"
SET_LSFA_LORA = "decoder LS-FA, LoRA (set-based)"
SET_IFT = "generative NER (IFT), LoRA"
TIME_LSFA_LORA = "decoder LS-FA, LoRA (time)"
SPEED_LSFA_LORA = "decoder LS-FA, LoRA (speed)"
SPEED_ENCODER = "encoder (speed)"

ROLES: tuple[Role, ...] = (
    Role(DECODER_LSFA_LORA, "strict_f1", kind="decoder", training="lora", attention="full"),
    Role(DECODER_LSCA_LORA, "strict_f1", kind="decoder", training="lora", attention="causal"),
    Role(DECODER_LSFA_FULL, "strict_f1", kind="decoder", training="full", attention="full"),
    Role(ENCODER_FULL, "strict_f1", kind="encoder", training="full"),
    Role(SET_LSFA_LORA, "set_f1", kind="decoder", training="lora", attention="full"),
    Role(SET_IFT, "set_f1", system="ift"),
    Role(TIME_LSFA_LORA, "time_ratio", kind="decoder", training="lora", attention="full"),
    Role(SPEED_LSFA_LORA, "ms_per_sentence", kind="decoder", training="lora", attention="full"),
    Role(SPEED_ENCODER, "ms_per_sentence", kind="encoder", training="full"),
)

PAPER = "Yano & Takamura 2026"
QWEN = "Qwen2.5-0.5B"
PAPER_NUMBERS: tuple[PaperNumber, ...] = (
    PaperNumber(DECODER_LSFA_LORA, QWEN, {"conll2003": 0.891, "bc5cdr": 0.863}),
    PaperNumber(DECODER_LSFA_LORA, "Llama-3.2-3B (the paper's best)", {"conll2003": 0.935, "bc5cdr": 0.899}),
    PaperNumber(DECODER_LSCA_LORA, QWEN, {"conll2003": 0.684, "bc5cdr": 0.674}),
    PaperNumber(DECODER_LSFA_FULL, QWEN, {"conll2003": 0.812, "bc5cdr": 0.837}),
    PaperNumber(ENCODER_FULL, "BERT-base", {"conll2003": 0.908, "bc5cdr": 0.858}),
    PaperNumber(ENCODER_FULL, "RoBERTa-base", {"conll2003": 0.915, "bc5cdr": 0.880}),
    PaperNumber(ENCODER_FULL, "DeBERTa-v3-large", {"conll2003": 0.911, "bc5cdr": 0.882}),
    PaperNumber(SET_LSFA_LORA, QWEN, {"conll2003": 0.898, "bc5cdr": 0.874}),
    PaperNumber(SET_IFT, QWEN, {"conll2003": 0.808, "bc5cdr": 0.804}),
    PaperNumber(TIME_LSFA_LORA, f"{QWEN} (to BERT-base)", {"conll2003": 3.3, "bc5cdr": 3.3}),
    PaperNumber(SPEED_LSFA_LORA, f"{QWEN} (H200)", {"conll2003": 11.3, "bc5cdr": 15.6}),
    PaperNumber(SPEED_ENCODER, "BERT-base (H200)", {"conll2003": 2.8, "bc5cdr": 2.2}),
)
PAPER_NOTES: tuple[str, ...] = (
    f"paper: {PAPER}, test split, one run on an H200, 10 epochs, lr 5e-5, batch 8",
    f"paper precision/recall of {QWEN} LS-FA LoRA: conll2003 P 0.887 R 0.894, bc5cdr P 0.858 R 0.868",
    "the paper's train-time ratio is to BERT-base, lsfa's to the smallest encoder cell of the grid",
    "ms per sentence: the paper's on an H200 GPU, lsfa's on the CPU named in each metrics.json",
)
PAPER_CORPORA: tuple[str, ...] = ("conll2003", "bc5cdr")


def reference_f1(corpus: str) -> float | None:
    """The paper's strict test F1 of its smallest decoder (Qwen2.5-0.5B, LS-FA, LoRA) on ``corpus``."""
    first = next(n for n in PAPER_NUMBERS if n.role == DECODER_LSFA_LORA)
    return first.values.get(corpus)
