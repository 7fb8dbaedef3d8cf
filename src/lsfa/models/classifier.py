"""Token classifiers from any decoder or encoder, with optional LoRA.

Where transformers ships a ``*ForTokenClassification`` class we use it (its head is the linear layer
``score`` for decoders, ``classifier`` for encoders). Where it has none (Gemma 3 text in transformers
5.23), we register one built from transformers' own ``GenericForTokenClassification`` with
``AutoModelForTokenClassification.register`` — no modeling code is copied, and a merged export loads
again with plain ``AutoModelForTokenClassification`` once :func:`ensure_token_classification_class` has
run for its config in the process (:func:`lsfa.models.saving.load_tagger` does that; registering every
such family at import would cost seconds).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer, PretrainedConfig

from lsfa.errors import LsfaError
from lsfa.models.attention import set_attention
from lsfa.models.catalogue import ENCODER_TYPES, unknown_model_message
from lsfa.models.quantise import quantization_config

HEAD_NAMES = ("score", "classifier")
"""Names transformers gives token-classification heads (decoders / encoders)."""


TEXT_WEIGHT_PREFIXES = {r"^language_model\.model\.": "model.", r"^model\.language_model\.": "model."}
"""Where a multimodal checkpoint (Gemma 3 4B and up) keeps its language model's weights, mapped to a text token
classifier's ``model.``: the hub's layout (``language_model.model.``, which transformers 5 also saves) and
transformers 5's in-memory one (``model.language_model.``)."""


def text_only_config(config: PretrainedConfig) -> tuple[PretrainedConfig, dict[str, str] | None]:
    """The config a token classifier is built from, and the checkpoint key mapping it needs: for a multimodal
    checkpoint (a ``text_config`` beside a ``vision_config``) its text config and :data:`TEXT_WEIGHT_PREFIXES`.

    Why: a head over the whole ``Gemma3Model`` wraps the vision tower too; ``all-linear`` LoRA then adapts vision
    layers that get no gradient from text (DDP fails on them) and the vision weights are loaded for nothing. NER
    reads text only, so only the language model is built and loaded."""
    text = config.get_text_config()
    if text is config or getattr(config, "vision_config", None) is None:
        return config, None
    return text, dict(TEXT_WEIGHT_PREFIXES)


def is_encoder(config: PretrainedConfig) -> bool:
    """True for BERT-style encoders (bidirectional by design), False for decoder LLMs."""
    return config.model_type in ENCODER_TYPES


def ensure_token_classification_class(config: PretrainedConfig) -> None:
    """Register a ``GenericForTokenClassification`` class for configs transformers has none for."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING

    if type(config) in MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING:
        return
    from transformers.modeling_layers import GenericForTokenClassification
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    if type(config) not in MODEL_MAPPING:
        raise LsfaError(f"transformers has no model class for model_type {config.model_type!r}")
    backbone_class = MODEL_MAPPING[type(config)]
    pretrained_base = backbone_class.__mro__[1]  # e.g. Gemma3PreTrainedModel
    name = backbone_class.__name__.removesuffix("Model") + "ForTokenClassification"
    namespace = {"__module__": __name__, "config_class": type(config)}
    head_class = type(name, (GenericForTokenClassification, pretrained_base), namespace)
    AutoModelForTokenClassification.register(type(config), head_class, exist_ok=True)


VERBOSE_ENV = "LSFA_VERBOSE"
"""Set (``lsfa --verbose``) to see transformers' load reports, progress bars and deprecation warnings."""


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report, progress bars and FutureWarnings while lsfa loads or trains a model.

    A fresh head is *expected* to be "newly initialized" (it is what training learns), and a LoRA tagger's head
    is created fresh before the adapter's trained head replaces it: true but misleading lines for a user. lsfa
    says once what it created instead. ``LSFA_VERBOSE=1`` (``lsfa --verbose``) shows everything."""
    if os.environ.get(VERBOSE_ENV):
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


GRADIENT_CHECKPOINTING_WARNING = r"`is_gradient_checkpointing` is deprecated"
"""transformers 5's FutureWarning when peft 0.21 (``PeftModel.__init__``) reads ``model.is_gradient_checkpointing``:
raised by peft's own code on every LoRA wrap or adapter load, nothing a user can act on (issue #37 item 8)."""


@contextlib.contextmanager
def peft_quietly() -> Iterator[None]:
    """Wrap or load a peft model without :data:`GRADIENT_CHECKPOINTING_WARNING` (other warnings still show)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", GRADIENT_CHECKPOINTING_WARNING, FutureWarning)
        yield


@contextlib.contextmanager
def hub_errors(model_path: str | Path) -> Iterator[None]:
    """Turn transformers' "couldn't connect to huggingface.co" for a hub id into one clear lsfa error."""
    try:
        yield
    except OSError as error:
        if isinstance(model_path, Path) or Path(str(model_path)).exists():
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LsfaError(unknown_model_message(str(model_path), first_line)) from error


def load_tokenizer(model_path: str | Path):
    """A fast tokenizer with a pad token (decoders often lack one: their EOS pads, masked anyway)."""
    with hub_errors(model_path):
        tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    if not getattr(tokenizer, "is_fast", False):
        raise LsfaError(f"{model_path}: lsfa needs a fast tokenizer (character offsets) for alignment")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    return tokenizer


def build_token_classifier(
    model_path: str | Path,
    labels: Sequence[str],
    attention: str = "full",
    attn_implementation: str | None = "sdpa",
    dtype: torch.dtype = torch.float32,
    layers: int | None = None,
    quantize: str = "none",
    compute_dtype: torch.dtype | None = None,
    device_map: dict | None = None,
) -> nn.Module:
    """Load ``model_path`` with a fresh token-classification head over ``labels`` and set its attention.

    ``attention`` is ``causal`` (LS-CA), ``full`` (LS-FA) or a layer pattern (see
    :func:`lsfa.models.attention.parse_attention`, counted over the kept layers); encoders ignore it (they are
    bidirectional). ``layers`` keeps only the first K transformer layers of a decoder: the others are never
    built or loaded, so they cost nothing in training or inference. ``quantize`` (``4bit`` / ``8bit``) loads the
    base through bitsandbytes with the head left unquantised, computing in ``compute_dtype`` (default ``dtype``;
    :mod:`lsfa.models.quantise`); ``device_map`` builds the weights straight on a device
    (:func:`lsfa.models.placement.device_map`).
    """
    with hub_errors(model_path):
        config = AutoConfig.from_pretrained(str(model_path))
    config, key_mapping = text_only_config(config)
    ensure_token_classification_class(config)
    if is_encoder(config):
        # Encoders are bidirectional already; some (MPNet) have no SDPA path, so let transformers choose.
        attn_implementation = None
    if layers is not None:
        keep_first_layers(config, layers)
    id2label = dict(enumerate(labels))
    config.num_labels = len(labels)
    config.id2label, config.label2id = id2label, {label: index for index, label in id2label.items()}
    placement = {"device_map": device_map} if device_map else {}
    quantization = quantization_config(quantize, compute_dtype or dtype, HEAD_NAMES)
    if quantization is not None:
        placement["quantization_config"] = quantization
    if key_mapping is not None:
        placement.update(key_mapping=key_mapping, output_loading_info=True)
    with quiet_transformers():
        model = AutoModelForTokenClassification.from_pretrained(
            str(model_path), config=config, attn_implementation=attn_implementation, dtype=dtype, **placement
        )
    if key_mapping is not None:
        model = _with_text_weights(model, model_path)
    apply_attention(model, attention)
    return model


def _with_text_weights(loaded: tuple[nn.Module, dict], model_path: str | Path) -> nn.Module:
    """The model of a multimodal checkpoint's text-only load, once every weight but the fresh head was found: a
    checkpoint whose language model sits under another prefix would otherwise train a random model silently."""
    model, info = loaded
    missing = sorted(key for key in info["missing_keys"] if key.split(".", 1)[0] not in HEAD_NAMES)
    if missing:
        raise LsfaError(
            f"{model_path}: {len(missing)} language-model weights not found in the multimodal checkpoint "
            f"(e.g. {missing[0]}; looked under language_model.model. and model.language_model.)"
        )
    return model


def keep_first_layers(config: PretrainedConfig, layers: int) -> None:
    """Shrink a decoder's config to its first ``layers`` transformer layers (per-layer lists follow)."""
    if is_encoder(config):
        raise LsfaError(f"layers: keeps the first K layers of a decoder; {config.model_type} is an encoder")
    text = config.get_text_config()
    total = getattr(text, "num_hidden_layers", None)
    if total is None or not 1 <= layers <= total:
        raise LsfaError(f"layers: {layers} is not between 1 and the model's {total} layers")
    text.num_hidden_layers = layers
    if isinstance(getattr(text, "layer_types", None), list):
        text.layer_types = text.layer_types[:layers]


def apply_attention(model: nn.Module, attention: str) -> str:
    """Set a decoder's attention (no-op for encoders); return the canonical setting string."""
    if is_encoder(model.config):
        if attention not in ("full", "bidirectional", "encoder"):
            raise LsfaError(f"{model.config.model_type} is an encoder: attention {attention!r} does not apply")
        return "full"
    return str(set_attention(model, attention))


def head_name(model: nn.Module) -> str:
    """Name of the classification head module of a token classifier."""
    for name in HEAD_NAMES:
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    raise LsfaError(f"{type(model).__name__} has no token-classification head named {HEAD_NAMES}")


def linear_targets(model: nn.Module, requested: Sequence[str] | str = "all-linear") -> list[str]:
    """Resolve LoRA target module names; ``all-linear`` means every linear layer (``nn.Linear`` and GPT-2's
    ``Conv1D``) except the output layer: a token classifier's head, a causal LM's ``lm_head``.

    The one resolver of the taggers and the generative IFT baseline. peft's own ``all-linear`` wraps the head
    ``score`` and then cannot save it as a trained module, and a causal LM's output layer stays tied to the
    embeddings, so we list the projections ourselves.
    """
    if isinstance(requested, str) and requested != "all-linear":
        requested = [part.strip() for part in requested.split(",") if part.strip()]
    if requested != "all-linear":
        return list(requested)
    from transformers.pytorch_utils import Conv1D

    output = _output_layer_name(model)
    names: set[str] = set()
    for full_name, module in model.named_modules():
        inside_output = full_name == output or full_name.startswith(output + ".")
        if isinstance(module, nn.Linear | Conv1D) and not inside_output:
            names.add(full_name.rsplit(".", 1)[-1])
    return sorted(names)


def _output_layer_name(model: nn.Module) -> str:
    """The module name of the layer that turns hidden states into outputs: the token-classification head, else the
    causal LM's output embeddings."""
    if any(isinstance(getattr(model, name, None), nn.Module) for name in HEAD_NAMES):
        return head_name(model)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    found = next((name for name, module in model.named_modules() if output is not None and module is output), None)
    if found is None:
        raise LsfaError(f"{type(model).__name__} has neither a token-classification head {HEAD_NAMES} nor an LM head")
    return found


def apply_lora(
    model: nn.Module,
    r: int = 32,
    alpha: int = 64,
    dropout: float = 0.05,
    target_modules: Sequence[str] | str = "all-linear",
) -> nn.Module:
    """Wrap ``model`` with LoRA adapters; the classification head is always fully trained and saved."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = linear_targets(model, target_modules)
    missing = [t for t in targets if not any(n.endswith("." + t) for n, _ in model.named_modules())]
    if missing:
        raise LsfaError(f"LoRA target modules not found in {model.config.model_type}: {missing}")
    lora = LoraConfig(
        task_type=TaskType.TOKEN_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        modules_to_save=[head_name(model)],
    )
    with peft_quietly():
        return get_peft_model(model, lora)


def count_parameters(model: nn.Module) -> dict[str, int | float]:
    """Trainable and total parameters, as the paper's LoRA table reports them."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "trainable_pct": 100.0 * trainable / max(total, 1)}
