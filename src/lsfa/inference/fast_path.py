"""A tagger's fastest inference path on a CPU, as measured by ``lsfa bench --choose-fast-path`` and recorded in
its folder, so that ``lsfa predict``, ``lsfa serve`` and :class:`lsfa.Tagger` use it without being told.

Why per CPU: which path is fastest depends on the CPU more than on the model (bf16 matmuls are 2-4x fp32 on an AMD
EPYC with AVX-512 BF16, much faster on an Intel Xeon with AMX, *slower* on a Xeon without AMX), so the record is a
mapping from the CPU label (:func:`lsfa.machine.cpu_label`) to the choice measured there; a tagger copied to a
machine with another CPU runs as before until it is measured there too.

Why only unchosen options: a recorded choice fills in the options the caller left at their defaults
(``precision="auto"``, no token budget, no packing); an explicit ``precision="fp32"`` or token budget wins.
"""

from __future__ import annotations

from typing import Any

from lsfa.inference.options import InferenceOptions
from lsfa.machine import cpu_flags, cpu_label, cpu_model

FAST_PATH_KEY = "fast_path"
"""Where the record lives in the tagger's metadata (``lsfa.json`` ``extra``): ``{cpu label: record}``."""

CHOSEN_OPTIONS = ("precision", "pack", "max_batch_tokens")
"""The options a fast-path record chooses."""


def this_cpu() -> str:
    """The label a record is kept under for this machine's CPU (model name, plus " with AMX")."""
    flags = [flag for flag, present in cpu_flags().items() if present]
    return cpu_label({"cpu_model": cpu_model(), "cpu_flags": flags})


def recorded_choice(extra: dict[str, Any], cpu: str) -> dict[str, Any] | None:
    """The options chosen for ``cpu`` in a tagger's metadata ``extra``, or None when it was never measured there."""
    record = (extra.get(FAST_PATH_KEY) or {}).get(cpu)
    if not isinstance(record, dict) or not isinstance(record.get("choice"), dict):
        return None
    return {name: record["choice"][name] for name in CHOSEN_OPTIONS if name in record["choice"]}


def with_recorded_choice(options: InferenceOptions, extra: dict[str, Any], cpu: str | None = None) -> InferenceOptions:
    """``options`` with the recorded fast path of this CPU filling every chosen option still at its default."""
    choice = recorded_choice(extra, cpu or this_cpu())
    if not choice:
        return options
    defaults = InferenceOptions.model_fields
    unchosen = {name: value for name, value in choice.items() if getattr(options, name) == defaults[name].default}
    return InferenceOptions.of(options, **unchosen) if unchosen else options


def add_record(extra: dict[str, Any], cpu: str, record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``extra`` with ``record`` as this CPU's fast path (other CPUs' records kept)."""
    records = dict(extra.get(FAST_PATH_KEY) or {})
    records[cpu] = record
    return {**extra, FAST_PATH_KEY: records}
