"""Data-parallel runs (torchrun / accelerate launch, each rank holding the whole model): the ranks' weight
check, the refusal of sharded training, and the process group's shutdown.

Why one module: these are the only places where a run behaves differently per rank, and ``lsfa train``
(:func:`leave_process_group`) needs them without the run's internals.
"""

from __future__ import annotations

import gc
from typing import Any

import torch
import torch.distributed as dist

from lsfa.errors import LsfaError


def fingerprint(model) -> float:
    """A cheap checksum of the trainable weights (DDP ranks must agree on it)."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum() for p in model.parameters() if p.requires_grad))


def ranks_agree(trainer) -> dict[str, Any]:
    """Gather every rank's weight fingerprint; DDP ranks must hold identical weights after training."""
    value = fingerprint(trainer.model)
    world = trainer.args.world_size
    if world <= 1:
        return {"world_size": 1, "fingerprints": [value], "agree": True}
    gathered: list[float] = [0.0] * world
    dist.all_gather_object(gathered, value)
    return {"world_size": world, "fingerprints": gathered, "agree": max(gathered) - min(gathered) < 1e-6}


def refuse_sharded_training(trainer) -> None:
    """One clear line instead of a run that would break later: FSDP and DeepSpeed shard the model, but rank 0
    alone saves, predicts and scores it at the end (see the module docstring)."""

    for name, enabled in (("FSDP", "is_fsdp_enabled"), ("DeepSpeed", "is_deepspeed_enabled")):
        if getattr(trainer, enabled, False):
            raise LsfaError(
                f"{name} is not supported: lsfa trains data-parallel (torchrun / accelerate launch without {name}, "
                "each rank holding the model); for a model too large for one card use quantize: 4bit and "
                "gradient_checkpointing (docs/large-models.md)"
            )


def leave_process_group() -> None:
    """Shut this process's torch.distributed group down, once the run's objects are gone (call it after
    :func:`train` has returned, on every rank).

    Left to the interpreter's exit, gloo's worker threads could still hold tensors while Python finalises,
    and a rank now and then died with SIGABRT after a successful run. Called inside :func:`train`, before its
    trainer and DDP-wrapped model were freed, the DDP reducer's teardown waited on the destroyed group forever.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
