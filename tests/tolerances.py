"""How tests decide "changed" or "unchanged" from floating-point model outputs.

Two computations that are equal in exact arithmetic can differ in fp32 by about 1e-7 to 1e-6 of the outputs'
scale: kernels block the work differently for other sequence lengths, thread counts and CPU families (an AMD
EPYC gave bit-identical logits where an Intel Xeon differed by 1.8e-7 to 9.5e-7 absolute, about 3e-6 of the
logits' scale). A real dependence, such as a bidirectional layer seeing a changed word, moves outputs by 8e-4
of their scale in the weakest case of the suite (a tiny random MPNet encoder) and by 1e-2 or more elsewhere.
The two thresholds sit between, a factor of at least 4 from each side, and a value between them fails both
checks instead of being read either way.
"""

from __future__ import annotations

import torch

UNCHANGED = 2e-5
"""Largest relative difference still called "the same": 6x the largest fp32 reordering noise seen."""

CHANGED = 2e-4
"""Smallest relative difference called "changed": 4x below the weakest real dependence in the suite."""


def relative_change(first: torch.Tensor, second: torch.Tensor) -> float:
    """Largest absolute difference over the larger of the two tensors' largest magnitudes."""
    first, second = first.detach().float(), second.detach().float()
    scale = max(first.abs().max().item(), second.abs().max().item(), 1e-12)
    return (first - second).abs().max().item() / scale


def is_unchanged(first: torch.Tensor, second: torch.Tensor) -> bool:
    return relative_change(first, second) <= UNCHANGED


def is_changed(first: torch.Tensor, second: torch.Tensor) -> bool:
    return relative_change(first, second) > CHANGED


def assert_unchanged(first: torch.Tensor, second: torch.Tensor, what: str = "") -> None:
    change = relative_change(first, second)
    assert change <= UNCHANGED, f"{what}: changed by {change:.2e} of its scale (limit {UNCHANGED:g})"


def assert_changed(first: torch.Tensor, second: torch.Tensor, what: str = "") -> None:
    change = relative_change(first, second)
    assert change > CHANGED, f"{what}: moved only {change:.2e} of its scale (needs > {CHANGED:g})"


def sees_right_context(first: torch.Tensor, second: torch.Tensor) -> bool:
    """Outputs at the left of two inputs that differ only on the right: True when they moved, False when they
    stayed put; a difference in the no-man's-land between the thresholds is an error, not an answer."""
    change = relative_change(first, second)
    assert change <= UNCHANGED or change > CHANGED, f"ambiguous change {change:.2e} of the outputs' scale"
    return change > CHANGED
