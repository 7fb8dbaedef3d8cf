"""How to run a tagger, in one object: built and validated once, then passed down unchanged.

``lsfa predict``, ``lsfa serve``, :class:`lsfa.Tagger` and the predictor all take an
:class:`InferenceOptions` (or its fields as keywords, which build one). Bad values are one
:class:`~lsfa.errors.LsfaError` naming the option, before any model loads.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from lsfa.errors import LsfaError
from lsfa.precision import Precision

Decoding = Literal["argmax", "viterbi"]
"""``argmax``: each word's most probable tag (the paper's reading; can be ill-formed, e.g. ``O I-PER``);
``viterbi``: the most probable well-formed tag sequence under the scheme's transitions."""

DEVICE_NAMES = re.compile(r"auto|cpu|cuda(:\d+)?")
"""The devices a tagger runs on: ``auto`` (the first CUDA GPU when there is one, else the CPU), ``cpu``, ``cuda``,
``cuda:N``. Checked by name here, before torch is asked; whether the GPU exists is checked when the tagger loads
(:func:`lsfa.models.placement.resolve_device`)."""


def _whole_number_as_float(value: Any) -> Any:
    """``0`` and ``1`` are numbers in [0, 1] too (JSON and YAML write them without a point); ``True`` is not."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


Threshold = Annotated[
    Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)] | None,
    BeforeValidator(_whole_number_as_float),
]
"""A confidence threshold in [0, 1], or none: a real number (not a string, a boolean or NaN). One type, so
``InferenceOptions`` and the server's request body (which must answer 422 before any work) check it alike."""


class InferenceOptions(BaseModel):
    """Precision, batching, packing, device, decoding and threshold of a tagger run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: Precision = Field(
        "auto", description="auto: bf16 where it is measured faster than fp32 here; int8: CPU only (lsfa.precision)"
    )
    batch_size: int = Field(
        32, ge=1, description="model rows (windows) per forward pass (lsfa predict: also documents per call)"
    )
    max_length: int | None = Field(None, gt=4, description="sub-tokens per window (default: as trained)")
    max_batch_tokens: int | None = Field(None, ge=1, description="fill each forward pass up to this many tokens")
    pack: bool = Field(False, description="pack short rows into shared rows (block-diagonal mask; decoders)")
    pack_tokens: int | None = Field(None, ge=8, description="pack length (default: chosen from the row lengths)")
    pad_to_multiple_of: int | None = Field(
        None, ge=1, description="round each batch's width up to a multiple of this (fewer distinct shapes)"
    )
    device: str = Field("auto", description="auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N")
    decoding: Decoding = Field(
        "viterbi", description="viterbi (well-formed spans) or argmax (each word's best tag, as the paper scored)"
    )
    threshold: Threshold = Field(
        None, description="drop entities whose confidence (calibrated span probability) is below this"
    )
    progress: bool = Field(False, description="show a progress bar over batches")

    @field_validator("device", mode="before")
    @classmethod
    def _device_name(cls, value: Any) -> Any:
        """``None`` (the old default) is ``auto``; any other name must be one :data:`DEVICE_NAMES` matches, so a
        typo (``gpu``, ``cuda1``) is refused before a model loads rather than by torch after it."""
        if value is None:
            return "auto"
        if not isinstance(value, str) or not DEVICE_NAMES.fullmatch(value):
            raise ValueError("use auto, cpu, cuda or cuda:N")
        return value

    @classmethod
    def of(cls, base: InferenceOptions | None = None, *, flags: bool = False, **values: Any) -> InferenceOptions:
        """``base`` (or the defaults) with ``values`` applied; an unknown or bad value is one clear error, naming
        the option as a command-line flag (``--max-batch-tokens``) when ``flags``."""
        data = (base or cls()).model_dump(exclude_unset=True) | values
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problem = error.errors()[0]
            name = ".".join(str(part) for part in problem["loc"]) or "options"
            given = values.get(name, problem.get("input"))
            shown = "--" + name.replace("_", "-") if flags else name
            raise LsfaError(f"{shown}: {problem['msg']} (got {given!r})") from None


CALL_OPTIONS: tuple[str, ...] = ("decoding", "threshold")
"""The options one call of a loaded tagger may override (``tagger(text, threshold=0.8)``, a server request's
``threshold``): they read the model's outputs; the others decide how the model runs and are set at load."""

EXACT = InferenceOptions(precision="fp32")
"""The predictor's defaults: plain fp32, the reference numbers (a :class:`Tagger` defaults to ``auto``)."""
