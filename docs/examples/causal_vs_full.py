"""LS-CA vs LS-FA on the default model: the first word's logits change only when the mask is bidirectional.

Run after ``lsfa models fetch smollm2-135m``:  ``python docs/examples/causal_vs_full.py``.
The 9-label head is freshly initialised (seeded), so the numbers are not predictions, only a probe:
under LS-CA the first word cannot see the rest of the sentence, under LS-FA it can.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from lsfa.models.attention import set_attention
from lsfa.models.catalogue import resolve_model

SENTENCE = "Paris is the capital of France ."
SAME_START = "Paris is the capital of Texas ."  # only the last word differs


def first_word_logits(model, tokenizer, text: str) -> torch.Tensor:
    inputs = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits[0, 0]


def main() -> None:
    folder = resolve_model("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(folder, num_labels=9, dtype=torch.float32).eval()
    torch.set_printoptions(precision=4, sci_mode=False)

    for mode in ("causal", "full"):
        set_attention(model, mode)
        logits = first_word_logits(model, tokenizer, SENTENCE)
        other = first_word_logits(model, tokenizer, SAME_START)
        print(f"{mode:6} first word 'Paris': {logits}")
        print(f"{'':6} after changing the last word, max |change| = {(logits - other).abs().max():.6f}")


if __name__ == "__main__":
    main()
