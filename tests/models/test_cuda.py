"""CUDA-only checks (``pytest -m cuda``; run by scripts/gpu-check.sh on a GPU machine, skipped elsewhere):
the attention switch under SDPA on CUDA, a bf16 training step with packed rows, and the predictor on CUDA."""

from __future__ import annotations

import pytest
import torch

from lsfa.inference.predictor import predict_words
from lsfa.models.classifier import build_token_classifier, load_tokenizer
from lsfa.models.packing import build_inputs
from tests.tiny import tiny_decoder_dir
from tests.tolerances import relative_change, sees_right_context

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_decoder_dir(tmp_path_factory.mktemp("cuda") / "llama", "llama")


@pytest.mark.parametrize("attention", ["full", "causal"])
def test_attention_switch_under_sdpa_on_cuda(base, attention):
    model = build_token_classifier(base, LABELS, attention).to(CUDA).eval()
    tokenizer = load_tokenizer(base)

    def first(text: str) -> torch.Tensor:
        with torch.no_grad():
            return model(**tokenizer(text, return_tensors="pt").to(CUDA)).logits[0, :2].float().cpu()

    assert sees_right_context(first("Peter visited Brussels"), first("Peter visited London")) is (attention == "full")


def test_bf16_training_step_with_packed_rows_matches_padding(base):
    torch.manual_seed(0)
    model = build_token_classifier(base, LABELS, "full").to(CUDA).train()
    rows = [[5, 17, 42, 8], [99, 23, 61], [7, 30, 12, 77, 3]]
    labels = [[1, 2, 0, 0], [0, 3, 4], [0, 0, 1, 2, 0]]
    losses = []
    for packed in (False, True):
        if packed:
            inputs, _ = build_inputs([rows], 0, CUDA)
            inputs["labels"] = torch.tensor([[tag for row in labels for tag in row]], device=CUDA)
        else:
            width = max(map(len, rows))
            ids = torch.tensor([r + [0] * (width - len(r)) for r in rows], device=CUDA)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=CUDA)
            gold = torch.tensor([g + [-100] * (width - len(g)) for g in labels], device=CUDA)
            inputs = {"input_ids": ids, "attention_mask": mask, "labels": gold}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            losses.append(model(**inputs).loss.float().cpu())
    assert relative_change(losses[0], losses[1]) < 2e-2  # bf16 rounding in other shapes, not a different loss


def test_predictor_on_cuda_agrees_with_cpu(base):
    torch.manual_seed(1)
    model = build_token_classifier(base, LABELS, "full").eval()
    tokenizer = load_tokenizer(base)
    sentences = [["Peter", "visited", "Brussels", "."], ["the", "dog", "sat"], ["London", "calling"]] * 4
    cpu = predict_words(model, tokenizer, sentences)
    gpu = predict_words(model.to(CUDA), tokenizer, sentences, precision="bf16", pack=True)
    same = sum(a == b for x, y in zip(cpu.tags, gpu.tags, strict=True) for a, b in zip(x, y, strict=True))
    assert same / sum(map(len, sentences)) >= 0.9
