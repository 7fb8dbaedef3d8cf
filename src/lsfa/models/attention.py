"""Choose which layers of a decoder-only model may look to the right (LS-CA, LS-FA, or a layer subset).

LS-FA (Yano & Takamura 2026) removes the causal mask in every layer of a decoder so that a token classifier
sees the whole sentence; LS-CA keeps it. Dukić & Šnajder showed that unmasking only some layers can be
enough. This module switches a loaded transformers model between these settings in place, using only
public transformers mechanisms, so any model family that follows the ``AttentionInterface`` design works
without copied modeling files:

* ``config.is_causal = False`` makes ``transformers.masking_utils`` build padding-only (bidirectional) masks
  (bidirectional *sliding-window* masks for sliding layers), and the model forwards it to every attention call
  as the ``is_causal`` keyword.
* every self-attention module's ``is_causal`` flag is set too, because SDPA falls back to it when the mask is
  ``None`` (batch without padding) and no keyword overrides it.
* for a layer subset, the model runs an attention function registered in ``AttentionInterface`` as
  ``lsfa_sdpa`` / ``lsfa_eager``. It wraps the stock implementation and, for the layers whose module keeps
  ``is_causal=True``, intersects the (bidirectional) mask with a causal triangle (and the sliding window).
* the chosen setting is written to ``config.lsfa_attention`` so a saved model carries it;
  :func:`restore_attention` re-applies it after a plain ``from_pretrained``.

See ``docs/attention.md`` for the traps this guards against.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

from lsfa.errors import LsfaError

AttentionMode = Literal["causal", "full", "layers"]
CONFIG_KEY = "lsfa_attention"
"""Name of the config attribute that records the attention setting (saved in ``config.json``)."""

SUPPORTED_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
FLASH = "flash_attention_2"
"""FlashAttention-2 (CUDA, ``pip install flash-attn``): transformers passes it ``is_causal`` per call, so ``full``
and ``causal`` work through ``config.is_causal``; it takes no 4D mask, so a layer subset (whose causal layers
intersect a mask with a triangle) is refused under it."""
FLASH_INSTALL = "pip install flash-attn --no-build-isolation"
_LSFA_PREFIX = "lsfa_"
_ORIGINAL_FLAG = "_lsfa_original_is_causal"


# --------------------------------------------------------------------------------------------------------------
# Specification and parsing
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionSpec:
    """Which layers attend in both directions.

    ``mode="causal"`` (LS-CA) and ``mode="full"`` (LS-FA) need no layer list; ``mode="layers"`` lists the
    0-based indices of the bidirectional layers, all others stay causal. ``str(spec)`` is the canonical text
    form accepted by :func:`parse_attention` (``causal``, ``full`` or ranges such as ``0-7,24-29``).
    """

    mode: AttentionMode
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("causal", "full", "layers"):
            raise LsfaError(f"attention mode must be 'causal', 'full' or 'layers', not {self.mode!r}")
        if self.mode != "layers" and self.layers:
            raise LsfaError(f"attention mode {self.mode!r} takes no layer list")
        if self.mode == "layers":
            if not self.layers:
                raise LsfaError("attention mode 'layers' needs at least one bidirectional layer")
            if any(not isinstance(i, int) or i < 0 for i in self.layers):
                raise LsfaError(f"layer indices must be non-negative integers, got {self.layers}")
            # Canonical order so that equal settings compare and print equal.
            object.__setattr__(self, "layers", tuple(sorted(set(self.layers))))

    def __str__(self) -> str:
        if self.mode != "layers":
            return self.mode
        return _format_ranges(self.layers)

    def bidirectional_layers(self, num_layers: int) -> tuple[int, ...]:
        """The indices of the layers that see right context in a model with ``num_layers`` layers."""
        if self.mode == "causal":
            return ()
        if self.mode == "full":
            return tuple(range(num_layers))
        too_high = [i for i in self.layers if i >= num_layers]
        if too_high:
            raise LsfaError(
                f"attention layers {_format_ranges(tuple(too_high))} out of range: "
                f"the model has {num_layers} layers (0-{num_layers - 1})"
            )
        return self.layers

    def normalized(self, num_layers: int) -> AttentionSpec:
        """The same setting in canonical form: a subset covering every layer becomes ``full``."""
        chosen = self.bidirectional_layers(num_layers)
        if self.mode == "layers" and len(chosen) == num_layers:
            return AttentionSpec("full")
        return self


def _format_ranges(layers: tuple[int, ...]) -> str:
    """``(0,1,2,5,7,8)`` -> ``"0-2,5,7-8"``."""
    parts: list[str] = []
    start = previous = None
    for index in sorted(set(layers)):
        if start is None:
            start = previous = index
        elif index == previous + 1:
            previous = index
        else:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = previous = index
    if start is not None:
        parts.append(str(start) if start == previous else f"{start}-{previous}")
    return ",".join(parts)


_ALIASES = {"causal": "causal", "ls-ca": "causal", "lsca": "causal", "full": "full", "ls-fa": "full", "lsfa": "full"}
_GROUPS = re.compile(r"groups\s*=\s*(\d+)\s*:\s*(\S+)")
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def parse_attention(text: str, num_layers: int) -> AttentionSpec:
    """Parse an attention setting for a model with ``num_layers`` layers.

    Accepted forms: ``causal`` (alias ``ls-ca``), ``full`` (alias ``ls-fa``), layer indices and inclusive
    ranges such as ``0-7,24-29``, and ``groups=G:BITS`` which splits the layers into ``G`` contiguous groups
    as evenly as possible (the first ``num_layers % G`` groups get one layer more, as in Dukić & Šnajder)
    and makes group ``i`` bidirectional when bit ``i`` is ``1``. A subset that covers every layer is
    returned as ``full``, an empty one (``groups=4:0000``) as ``causal``.
    """
    if num_layers < 1:
        raise LsfaError(f"the model must have at least one layer, got num_layers={num_layers}")
    if not isinstance(text, str):
        raise LsfaError(f"attention setting must be a string, got {type(text).__name__}")
    cleaned = text.strip().lower()
    if not cleaned:
        raise LsfaError("empty attention setting: expected 'causal', 'full', layer ranges or groups=G:BITS")
    if cleaned in _ALIASES:
        return AttentionSpec(_ALIASES[cleaned])  # type: ignore[arg-type]
    if cleaned.startswith("groups"):
        layers = _parse_groups(cleaned, num_layers, text)
    else:
        layers = _parse_ranges(cleaned, num_layers, text)
    if not layers:
        return AttentionSpec("causal")
    return AttentionSpec("layers", tuple(layers)).normalized(num_layers)


def _parse_groups(cleaned: str, num_layers: int, original: str) -> list[int]:
    match = _GROUPS.fullmatch(cleaned)
    if match is None:
        raise LsfaError(f"bad attention setting {original!r}: expected groups=G:BITS, e.g. groups=4:1010")
    group_count, bits = int(match.group(1)), match.group(2)
    if not 1 <= group_count <= num_layers:
        raise LsfaError(
            f"bad attention setting {original!r}: the group count must be between 1 and the "
            f"number of layers ({num_layers})"
        )
    if len(bits) != group_count or set(bits) - {"0", "1"}:
        raise LsfaError(
            f"bad attention setting {original!r}: expected {group_count} bits of 0/1 after the colon, got {bits!r}"
        )
    layers: list[int] = []
    for bit, group in zip(bits, split_into_groups(num_layers, group_count), strict=True):
        if bit == "1":
            layers.extend(group)
    return layers


def split_into_groups(num_layers: int, group_count: int) -> list[range]:
    """Contiguous layer groups of near-equal size; the first ``num_layers % group_count`` are one longer."""
    base, extra = divmod(num_layers, group_count)
    groups, start = [], 0
    for index in range(group_count):
        size = base + (1 if index < extra else 0)
        groups.append(range(start, start + size))
        start += size
    return groups


def _parse_ranges(cleaned: str, num_layers: int, original: str) -> list[int]:
    layers: list[int] = []
    for item in cleaned.split(","):
        item = item.strip()
        match = _RANGE.fullmatch(item)
        if match is None:
            raise LsfaError(
                f"bad attention setting {original!r}: expected 'causal', 'full', layer ranges such as "
                f"'0-7,24-29', or 'groups=G:BITS' (item {item!r} is not a layer index or range)"
            )
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if low > high:
            raise LsfaError(f"bad attention setting {original!r}: range {item!r} runs backwards")
        if high >= num_layers:
            raise LsfaError(
                f"bad attention setting {original!r}: layer {high} out of range, the model has "
                f"{num_layers} layers (0-{num_layers - 1})"
            )
        layers.extend(range(low, high + 1))
    return layers


# --------------------------------------------------------------------------------------------------------------
# The per-layer attention function
# --------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _causal_keep(q_length: int, kv_length: int, window: int | None, device: torch.device) -> torch.Tensor:
    """Boolean ``(1, 1, q, kv)`` matrix: True where a query may see a key under the causal rule.

    Aligned bottom-right (the last query is the last key), so it stays right when keys include earlier
    tokens; without a cache ``q == kv`` and it is the plain lower triangle. ``window`` reproduces the
    causal sliding window of transformers (``kv > q - window``). Position indices, not token counts, are
    compared: with left padding the padding keys are masked by the padding mask anyway.
    """
    # A normal tensor even when first built under inference_mode, so a later training step may reuse it.
    with torch.inference_mode(False), torch.no_grad():
        query_positions = torch.arange(q_length, device=device)[:, None] + (kv_length - q_length)
        key_positions = torch.arange(kv_length, device=device)[None, :]
        keep = key_positions <= query_positions
        if window is not None:
            keep &= key_positions > query_positions - window
    return keep[None, None]


def _restrict_to_causal(
    attention_mask: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor, window: int | None
) -> torch.Tensor:
    """Intersect a bidirectional mask (bool for SDPA, additive float for eager, or None) with the causal rule."""
    if attention_mask is None:
        return _causal_keep(query.shape[2], key.shape[2], window, query.device)
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.ndim != 4:
        raise LsfaError(
            f"per-layer attention needs a 4D tensor mask (sdpa or eager attention); got {type(attention_mask).__name__}"
        )
    keep = _causal_keep(attention_mask.shape[-2], attention_mask.shape[-1], window, attention_mask.device)
    if attention_mask.dtype == torch.bool:
        return attention_mask & keep
    return attention_mask.masked_fill(~keep, torch.finfo(attention_mask.dtype).min)


def _as_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Eager attention adds its mask to the scores: turn a boolean keep-matrix into 0 / dtype-min."""
    if mask.dtype != torch.bool:
        return mask
    return torch.zeros((), dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


@functools.cache
def _model_eager_function(module_class: type) -> Callable[..., Any]:
    """The eager attention of the model family (each modeling file defines its own, e.g. with soft-capping)."""
    function = getattr(sys.modules.get(module_class.__module__), "eager_attention_forward", None)
    if function is None:
        raise LsfaError(
            f"{module_class.__name__} has no eager_attention_forward in its modeling file; "
            "per-layer attention is not supported for this model with attn_implementation='eager'"
        )
    return function


def _layer_window(module: nn.Module, kwargs: dict[str, Any]) -> int | None:
    window = kwargs.get("sliding_window")
    return window if window is not None else getattr(module, "sliding_window", None)


def lsfa_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """SDPA that keeps layers whose module says ``is_causal=True`` causal, others bidirectional.

    The model builds one bidirectional mask for all layers (``config.is_causal=False``); only the causal
    layers pay for the intersection with the cached triangle. ``is_causal`` is always passed as False to
    SDPA: the causal rule is in the mask, so a ``None`` mask never falls back to a causal kernel.
    """
    kwargs.pop("is_causal", None)
    if getattr(module, "is_causal", False):
        attention_mask = _restrict_to_causal(attention_mask, query, key, _layer_window(module, kwargs))
    return sdpa_attention_forward(module, query, key, value, attention_mask, is_causal=False, **kwargs)


def lsfa_eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model family's own eager attention, with the same per-layer rule as :func:`lsfa_sdpa_attention`."""
    kwargs.pop("is_causal", None)
    if getattr(module, "is_causal", False):
        restricted = _restrict_to_causal(attention_mask, query, key, _layer_window(module, kwargs))
        attention_mask = _as_additive(restricted, query.dtype)
    return _model_eager_function(type(module))(module, query, key, value, attention_mask, **kwargs)


def _register_attention_functions() -> None:
    """Make ``lsfa_sdpa`` / ``lsfa_eager`` valid ``attn_implementation`` names (idempotent).

    The mask interface needs the same names, otherwise ``masking_utils`` treats the implementation as an
    external backend and passes no mask at all (padding would be silently ignored).
    """
    AttentionInterface.register(_LSFA_PREFIX + "sdpa", lsfa_sdpa_attention)
    AttentionInterface.register(_LSFA_PREFIX + "eager", lsfa_eager_attention)
    AttentionMaskInterface.register(_LSFA_PREFIX + "sdpa", sdpa_mask)
    AttentionMaskInterface.register(_LSFA_PREFIX + "eager", eager_mask)


_register_attention_functions()


# --------------------------------------------------------------------------------------------------------------
# Applying a setting to a model
# --------------------------------------------------------------------------------------------------------------


def _transformers_models(model: nn.Module) -> list[PreTrainedModel]:
    """Every transformers model inside ``model`` (itself, a peft wrapper's base, or a custom head's body)."""
    found = [module for module in model.modules() if isinstance(module, PreTrainedModel)]
    if not found:
        raise LsfaError(f"{type(model).__name__} contains no transformers model; cannot set its attention")
    return found


def _distinct_configs(models: list[PreTrainedModel]) -> list[Any]:
    configs: dict[int, Any] = {}
    for transformer in models:
        configs.setdefault(id(transformer.config), transformer.config)
        text_config = transformer.config.get_text_config()
        configs.setdefault(id(text_config), text_config)
    return list(configs.values())


def _attention_modules(model: nn.Module) -> Iterator[nn.Module]:
    """Self-attention modules: they carry both ``layer_idx`` and an ``is_causal`` flag."""
    for module in model.modules():
        if getattr(module, "is_cross_attention", False):
            continue
        if isinstance(getattr(module, "is_causal", None), bool) and isinstance(getattr(module, "layer_idx", None), int):
            yield module


def _has_causal_buffer(module: nn.Module) -> bool:
    """Older GPT-style attention (GPT-Neo, OpenAI GPT) masks with its own lower-triangular buffer."""
    for buffer in module.buffers(recurse=False):
        if buffer.ndim >= 2 and buffer.shape[-1] == buffer.shape[-2] and buffer.shape[-1] > 1:
            square = buffer.reshape(-1, buffer.shape[-2], buffer.shape[-1])[0].bool()
            if torch.equal(square, torch.tril(torch.ones_like(square))):
                return True
    return False


def _check_supported(root: PreTrainedModel, modules: list[nn.Module], implementation: str) -> None:
    name = type(root).__name__
    if not type(root)._can_set_attn_implementation():
        raise LsfaError(f"{name} does not use transformers' AttentionInterface; lsfa cannot change its attention")
    if not modules:
        raise LsfaError(f"{name} has no self-attention modules with an is_causal flag; cannot change its attention")
    for module in modules:
        if _has_causal_buffer(module):
            raise LsfaError(f"{name} masks attention with its own causal buffer; lsfa cannot change its attention")
    if implementation not in SUPPORTED_IMPLEMENTATIONS:
        raise LsfaError(
            f"bidirectional attention needs attn_implementation 'sdpa', 'eager' or '{FLASH}', but {name} uses "
            f"{implementation!r}; load the model with attn_implementation='sdpa'"
        )


def _num_layers(root: PreTrainedModel) -> int:
    count = getattr(root.config.get_text_config(), "num_hidden_layers", None)
    if not isinstance(count, int) or count < 1:
        raise LsfaError(f"{type(root).__name__} does not declare num_hidden_layers in its config")
    return count


def _base_implementation(root: PreTrainedModel) -> str:
    current = root.config._attn_implementation or "sdpa"
    return current.removeprefix(_LSFA_PREFIX)


def _set_config_causality(config: Any, spec: AttentionSpec) -> None:
    """``is_causal=False`` makes masking_utils build bidirectional masks; causal mode restores the default.

    Most configs do not declare ``is_causal``; deleting our attribute restores the pristine config (and a
    pristine ``config.json``). Configs that declare it as a field get ``True`` back.
    """
    declared = "is_causal" in getattr(type(config), "__dataclass_fields__", {})
    if spec.mode != "causal":
        config.is_causal = False
    elif declared:
        config.is_causal = True
    else:
        vars(config).pop("is_causal", None)
    setattr(config, CONFIG_KEY, str(spec))


def _set_implementation(models: list[PreTrainedModel], wanted: str) -> None:
    for transformer in models:
        if transformer.config._attn_implementation != wanted:
            transformer.set_attn_implementation(wanted)
        if transformer.config._attn_implementation != wanted:
            raise LsfaError(f"could not switch {type(transformer).__name__} to attention implementation {wanted!r}")


def set_attention(model: nn.Module, spec: AttentionSpec | str) -> AttentionSpec:
    """Set the attention of ``model`` in place and record it in its config; returns the applied setting.

    ``model`` may be a base model, a ``*ForTokenClassification`` / ``*ForCausalLM`` model, a peft-wrapped
    model, or any module holding one. Calling it again with another setting switches back and forth; the
    padding mask is always kept. ``causal`` leaves the model exactly as transformers builds it.
    """
    models = _transformers_models(model)
    root = models[0]
    num_layers = _num_layers(root)
    spec = parse_attention(spec, num_layers) if isinstance(spec, str) else spec.normalized(num_layers)
    modules = list(_attention_modules(model))
    base = _base_implementation(root)
    if spec.mode != "causal":
        _check_supported(root, modules, base)
    if spec.mode == "layers" and base == FLASH:
        raise LsfaError(_flash_subset_message(str(spec)))

    bidirectional = set(spec.bidirectional_layers(num_layers))
    for module in modules:
        if module.layer_idx >= num_layers:
            raise LsfaError(f"attention module with layer_idx {module.layer_idx} beyond {num_layers} layers")
        original = module.__dict__.setdefault(_ORIGINAL_FLAG, module.is_causal)
        module.is_causal = original if spec.mode == "causal" else module.layer_idx not in bidirectional

    for config in _distinct_configs(models):
        _set_config_causality(config, spec)
    _set_implementation(models, _LSFA_PREFIX + base if spec.mode == "layers" else base)
    return spec


def flash_attention_available() -> bool:
    """Whether FlashAttention-2 can run here: the ``flash_attn`` package imports and a CUDA GPU is present."""
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def _flash_subset_message(attention: str) -> str:
    return (
        f"attention {attention!r} sets layers one by one, which needs a 4D mask: use attn_implementation sdpa "
        f"(flash_attention_2 runs full or causal only)"
    )


def check_implementation(implementation: str | None, attention: str = "full") -> None:
    """Refuse, in one line and before any weights load, an attention implementation this run cannot use:
    ``flash_attention_2`` without the package or a GPU, or with a layer subset."""
    if implementation != FLASH:
        return
    if not flash_attention_available():
        raise LsfaError(f"attn_implementation {FLASH} needs the flash-attn package and a CUDA GPU: {FLASH_INSTALL}")
    if attention.strip().lower() not in _ALIASES:
        raise LsfaError(_flash_subset_message(attention))


def get_attention(model: nn.Module) -> AttentionSpec | None:
    """The setting recorded in the model's config by :func:`set_attention`, or None if there is none."""
    models = _transformers_models(model)
    recorded = getattr(models[0].config, CONFIG_KEY, None)
    if recorded is None:
        return None
    return parse_attention(str(recorded), _num_layers(models[0]))


def restore_attention(model: nn.Module, default: AttentionSpec | str | None = None) -> AttentionSpec:
    """Re-apply the attention setting saved in ``config.lsfa_attention`` (call it after ``from_pretrained``).

    A plain ``from_pretrained`` rebuilds the attention modules with ``is_causal=True`` and the stock
    attention function, so a per-layer setting would be lost (and batch-size-1 inputs could silently become
    causal on some models). Without a recorded setting, ``default`` is applied; with neither, this raises
    rather than guessing.
    """
    models = _transformers_models(model)
    recorded = getattr(models[0].config, CONFIG_KEY, None)
    if recorded is None:
        if default is None:
            raise LsfaError(
                f"the model config has no {CONFIG_KEY!r} entry (not saved by lsfa); "
                "call set_attention(model, 'full' or 'causal') instead"
            )
        return set_attention(model, default)
    return set_attention(model, str(recorded))
