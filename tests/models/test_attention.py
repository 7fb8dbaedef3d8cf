"""Tests for lsfa.models.attention: parsing, and the mask behaviour on tiny random models of many families."""

from __future__ import annotations

import functools
import json
import logging

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

from lsfa.errors import LsfaError
from lsfa.models.attention import (
    AttentionSpec,
    _has_causal_buffer,
    get_attention,
    parse_attention,
    restore_attention,
    set_attention,
    split_into_groups,
)
from tests.tolerances import assert_changed, assert_unchanged, sees_right_context

# --------------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("causal", AttentionSpec("causal")),
        ("  FULL ", AttentionSpec("full")),
        ("ls-ca", AttentionSpec("causal")),
        ("LS-FA", AttentionSpec("full")),
        ("0-7,24-29", AttentionSpec("layers", (*range(8), *range(24, 30)))),
        ("5, 3,4", AttentionSpec("layers", (3, 4, 5))),
        ("0-29", AttentionSpec("full")),
        ("groups=4:1111", AttentionSpec("full")),
        ("groups=4:0000", AttentionSpec("causal")),
        ("groups=4:1000", AttentionSpec("layers", tuple(range(8)))),
        ("groups = 4 : 0001", AttentionSpec("layers", tuple(range(23, 30)))),
        ("groups=4:1010", AttentionSpec("layers", (*range(8), *range(16, 23)))),
    ],
)
def test_parse_attention_forms(text: str, expected: AttentionSpec) -> None:
    assert parse_attention(text, 30) == expected


def test_groups_split_as_evenly_as_possible_with_longer_groups_first() -> None:
    assert [len(group) for group in split_into_groups(30, 4)] == [8, 8, 7, 7]
    assert [list(group) for group in split_into_groups(5, 5)] == [[0], [1], [2], [3], [4]]
    assert sum(len(group) for group in split_into_groups(31, 3)) == 31


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30", "out of range"),
        ("0-30", "out of range"),
        ("7-3", "backwards"),
        ("-1", "not a layer index"),
        ("1,,2", "not a layer index"),
        ("bidirectional", "not a layer index"),
        ("", "empty"),
        ("groups=4:101", "expected 4 bits"),
        ("groups=4:10201", "expected 4 bits"),
        ("groups=4:1021", "expected 4 bits"),
        ("groups=0:1", "group count"),
        ("groups=31:" + "1" * 31, "group count"),
        ("groups4:1010", "groups=G:BITS"),
    ],
)
def test_parse_attention_rejects_bad_strings(text: str, message: str) -> None:
    with pytest.raises(LsfaError, match=message):
        parse_attention(text, 30)


def test_spec_validation_and_layer_lookup() -> None:
    with pytest.raises(LsfaError):
        AttentionSpec("sideways")  # type: ignore[arg-type]
    with pytest.raises(LsfaError):
        AttentionSpec("full", (1,))
    with pytest.raises(LsfaError):
        AttentionSpec("layers", ())
    spec = AttentionSpec("layers", (5, 1, 1))
    assert spec.layers == (1, 5)
    assert spec.bidirectional_layers(6) == (1, 5)
    with pytest.raises(LsfaError, match="out of range"):
        spec.bidirectional_layers(4)
    assert AttentionSpec("full").bidirectional_layers(3) == (0, 1, 2)
    assert AttentionSpec("causal").bidirectional_layers(3) == ()


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_str_round_trips_through_parse(case: tuple[int, set[int]]) -> None:
    num_layers, chosen = case
    text = ",".join(str(i) for i in sorted(chosen)) or "causal"
    spec = parse_attention(text, num_layers)
    assert parse_attention(str(spec), num_layers) == spec
    assert set(spec.bidirectional_layers(num_layers)) == chosen


def padding_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on the first real token of each row: what a caller passes with left padding
    (lsfa itself pads on the right, ``models.classifier.load_tokenizer``).

    Models with absolute position embeddings (GPT-2) otherwise give a left-padded sentence other positions
    than the same sentence alone; rotary models only see relative offsets but get the same numbers too.
    """
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.clamp(min=0)


def test_padding_position_ids_start_at_first_real_token() -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert padding_position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2]]


# --------------------------------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------------------------------

NUM_LAYERS = 3
SLIDING_WINDOW = 4  # shorter than the test sentences, so sliding layers really slide
MODEL_TYPES = [
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi3",
    "gpt2",
    "phi",
    "starcoder2",
    "olmo",
    "olmo2",
    "granite",
    "cohere",
    "stablelm",
    "gpt_neox",
    "smollm3",
    "glm",
    "exaone4",
    "seed_oss",
]
NO_SDPA = {"gemma2"}  # transformers 5.23 refuses sdpa for Gemma 2 (soft-capping)
CASES = [(kind, impl) for kind in MODEL_TYPES for impl in ("sdpa", "eager") if not (impl == "sdpa" and kind in NO_SDPA)]
CASE_IDS = [f"{kind}-{impl}" for kind, impl in CASES]


def tiny_config(model_type: str, num_layers: int = NUM_LAYERS, **overrides):
    """A randomly initialisable config: hidden 32, vocab 100, no special ids outside the vocabulary."""
    if model_type == "gpt2":
        values = {"n_embd": 32, "n_layer": num_layers, "n_head": 4, "n_positions": 64}
    else:
        values = {
            "hidden_size": 32,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
        }
    values.update(vocab_size=100, pad_token_id=0, bos_token_id=None, eos_token_id=None)
    if model_type in ("mistral", "gemma2", "gemma3_text", "phi3", "starcoder2"):
        values["sliding_window"] = SLIDING_WINDOW
    if model_type in ("gemma2", "gemma3_text"):
        values.update(head_dim=8, query_pre_attn_scalar=8)
        # sliding, full, sliding: both kinds of layer, and a layer subset can pick either
        values["layer_types"] = ["sliding_attention", "full_attention", "sliding_attention"][:num_layers]
    values.update(overrides)
    return AutoConfig.for_model(model_type, **values)


def build_model(model_type: str, impl: str, num_layers: int = NUM_LAYERS, **overrides) -> nn.Module:
    """A token classifier when the family has one, else the base model (same seed -> same weights)."""
    config = tiny_config(model_type, num_layers, **overrides)
    torch.manual_seed(0)
    try:
        model = AutoModelForTokenClassification.from_config(config, attn_implementation=impl)
    except ValueError:
        model = AutoModel.from_config(config, attn_implementation=impl)
    return model.eval()


@functools.cache
def cached_model(model_type: str, impl: str) -> nn.Module:
    """Shared across tests to keep the suite fast; every test sets the attention it needs first."""
    return build_model(model_type, impl)


def run(model: nn.Module, input_ids: torch.Tensor, **kwargs) -> tuple[torch.Tensor, ...]:
    """Hidden states (embeddings, then after each layer) followed by the logits when there is a head."""
    with torch.no_grad():
        output = model(input_ids=input_ids, output_hidden_states=True, **kwargs)
    states = tuple(output.hidden_states)
    logits = getattr(output, "logits", None)
    return (*states, logits) if logits is not None else states


SENTENCE = torch.tensor([[5, 17, 42, 8, 99, 23, 61, 7, 30, 12, 77, 3]])
PROBE, CHANGED = 2, 5  # change token 5, look at position 2: within one sliding window, so every layer can see it


def changed_sentence() -> torch.Tensor:
    other = SENTENCE.clone()
    other[0, CHANGED] = 55
    return other


def moved_at(first: tuple[torch.Tensor, ...], second: tuple[torch.Tensor, ...], index: int) -> bool:
    """Whether output number ``index`` moved at the probe position (beyond fp32 reordering noise, see
    tests/tolerances.py; an amount between the two thresholds fails the test)."""
    return sees_right_context(first[index][0, PROBE], second[index][0, PROBE])


@pytest.mark.parametrize(("model_type", "impl"), CASES, ids=CASE_IDS)
def test_modes_control_right_context(model_type: str, impl: str) -> None:
    pristine = run(build_model(model_type, impl), SENTENCE)
    model = cached_model(model_type, impl)

    assert str(set_attention(model, "full")) == "full"
    full, full_changed = run(model, SENTENCE), run(model, changed_sentence())
    assert moved_at(full, full_changed, -1), "full: the last output must see a change on the right"

    spec = set_attention(model, "1")  # only the middle layer is bidirectional
    assert spec == AttentionSpec("layers", (1,))
    subset, subset_changed = run(model, SENTENCE), run(model, changed_sentence())
    assert not moved_at(subset, subset_changed, 1), "layer 0 is causal"
    assert moved_at(subset, subset_changed, 2), "layer 1 sees right context"
    assert moved_at(subset, subset_changed, -1)

    set_attention(model, "causal")
    causal, causal_changed = run(model, SENTENCE), run(model, changed_sentence())
    for index in range(len(causal)):
        assert not moved_at(causal, causal_changed, index), "causal: no output may see the right"
        assert_unchanged(causal[index], pristine[index], f"causal output {index} vs the unmodified model")


@pytest.mark.parametrize(("model_type", "impl"), CASES, ids=CASE_IDS)
def test_causal_layers_of_a_subset_match_the_causal_model(model_type: str, impl: str) -> None:
    """The per-layer attention function must rebuild exactly the causal (and sliding-window) pattern."""
    model = cached_model(model_type, impl)
    causal = run(set_model(model, "causal"), SENTENCE)
    last_only = run(set_model(model, str(NUM_LAYERS - 1)), SENTENCE)
    for index in range(NUM_LAYERS):  # embeddings and the outputs of the causal layers 0 .. L-2
        assert_unchanged(last_only[index], causal[index], f"output {index}")
    assert_changed(last_only[-1], causal[-1], "the bidirectional last layer")


def set_model(model: nn.Module, spec: str) -> nn.Module:
    set_attention(model, spec)
    return model


SENTENCES = [SENTENCE[0, :7], SENTENCE[0, :], SENTENCE[0, 3:7]]


def padded_batch(side: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(sentence) for sentence in SENTENCES)
    ids = torch.zeros(len(SENTENCES), width, dtype=torch.long)
    mask = torch.zeros(len(SENTENCES), width, dtype=torch.long)
    for row, sentence in enumerate(SENTENCES):
        span = slice(0, len(sentence)) if side == "right" else slice(width - len(sentence), width)
        ids[row, span] = sentence
        mask[row, span] = 1
    return ids, mask


@pytest.mark.parametrize("mode", ["causal", "full", "1"])
@pytest.mark.parametrize(("model_type", "impl"), CASES, ids=CASE_IDS)
def test_padding_gives_the_same_predictions_as_a_batch_of_one(model_type: str, impl: str, mode: str) -> None:
    model = set_model(cached_model(model_type, impl), mode)
    alone = [run(model, sentence[None])[-1][0] for sentence in SENTENCES]  # no attention_mask at all
    for side in ("right", "left"):
        ids, mask = padded_batch(side)
        batch = run(model, ids, attention_mask=mask, position_ids=padding_position_ids(mask))[-1]
        for row, expected in enumerate(alone):
            real = mask[row].bool()
            assert_unchanged(batch[row][real], expected, f"{side} row {row}")  # other shapes: reordering noise


def test_all_ones_mask_equals_no_mask_in_full_mode() -> None:
    model = set_model(cached_model("llama", "sdpa"), "full")
    without = run(model, SENTENCE)[-1]
    with_mask = run(model, SENTENCE, attention_mask=torch.ones_like(SENTENCE))[-1]
    assert_unchanged(with_mask, without, "an all-ones mask")


def test_switching_back_and_forth_is_reproducible_and_idempotent() -> None:
    model = build_model("qwen2", "sdpa")
    first_full = run(set_model(model, "full"), SENTENCE)[-1]
    set_attention(model, "full")
    assert_unchanged(run(model, SENTENCE)[-1], first_full, "full set twice")
    causal = run(set_model(model, "causal"), SENTENCE)[-1]
    subset = run(set_model(model, "groups=3:010"), SENTENCE)[-1]
    again_full = run(set_model(model, "full"), SENTENCE)[-1]
    assert_unchanged(again_full, first_full, "full again")
    assert_changed(causal, first_full, "causal vs full")
    assert_changed(subset, first_full, "a layer subset vs full")
    assert_unchanged(run(set_model(model, "causal"), SENTENCE)[-1], causal, "causal again")


def test_config_records_the_setting_and_causal_leaves_no_trace() -> None:
    model = build_model("llama", "sdpa")
    set_attention(model, "0,2")
    assert model.config.lsfa_attention == "0,2"
    assert model.config.is_causal is False
    assert model.config._attn_implementation == "lsfa_sdpa"
    assert get_attention(model) == AttentionSpec("layers", (0, 2))
    set_attention(model, AttentionSpec("causal"))
    assert model.config.lsfa_attention == "causal"
    assert "is_causal" not in model.config.to_dict()
    assert model.config._attn_implementation == "sdpa"
    assert all(layer.self_attn.is_causal for layer in model.model.layers)


def test_full_mode_needs_no_mask_tricks_on_the_attention_modules() -> None:
    """SDPA reads ``module.is_causal`` when the mask is None: full mode must clear it in every layer."""
    model = set_model(build_model("gpt2", "sdpa"), "full")
    assert not any(block.attn.is_causal for block in model.transformer.h)
    assert model.config._attn_implementation == "sdpa"


def test_gemma3_full_mode_keeps_a_bidirectional_sliding_window() -> None:
    """Documented choice: sliding layers see ``sliding_window`` tokens on each side, full layers everything."""
    window = 3
    model = set_model(build_model("gemma3_text", "sdpa", num_layers=1, sliding_window=window), "full")
    base = run(model, SENTENCE)
    for distance, visible in [(window, True), (window + 1, False)]:
        other = SENTENCE.clone()
        other[0, PROBE + distance] = 55
        assert sees_right_context(run(model, other)[1][0, PROBE], base[1][0, PROBE]) is visible, f"distance {distance}"
    # The same limit on the left: a token window + 1 positions back is out of sight.
    other = SENTENCE.clone()
    other[0, PROBE + 5 - window - 1] = 55
    assert_unchanged(run(model, other)[1][0, PROBE + 5], base[1][0, PROBE + 5], "a token out of the window")


def test_peft_wrapped_model() -> None:
    peft = pytest.importorskip("peft")
    model = build_model("llama", "sdpa")
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="TOKEN_CLS")
    wrapped = peft.get_peft_model(model, lora).eval()
    for mode, sees_right_after in [("full", [1, 2, 3]), ("causal", []), ("2", [3]), ("0-1", [1, 2, 3])]:
        set_attention(wrapped, mode)
        base, changed = run(wrapped, SENTENCE), run(wrapped, changed_sentence())
        moved = [index for index in range(1, NUM_LAYERS + 1) if moved_at(base, changed, index)]
        assert moved == sees_right_after, mode
    assert wrapped.get_base_model().config.lsfa_attention == "0-1"


class HeadOnBase(nn.Module):
    """What lsfa does for Gemma 3 (no ForTokenClassification class): base model plus a linear head."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.head = nn.Linear(32, 5)

    def forward(self, input_ids: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.head(self.body(input_ids=input_ids, **kwargs).last_hidden_state)


def test_custom_module_holding_a_base_model() -> None:
    body = AutoModel.from_config(tiny_config("gemma3_text"), attn_implementation="sdpa")
    model = HeadOnBase(body).eval()
    for mode, sees_right in [("full", True), ("causal", False), ("0", True)]:
        set_attention(model, mode)
        with torch.no_grad():
            moved = sees_right_context(model(SENTENCE)[0, PROBE], model(changed_sentence())[0, PROBE])
        assert moved is sees_right, mode


@pytest.mark.parametrize("mode", ["full", "1"])
def test_save_and_restore_keeps_the_setting(tmp_path, mode: str) -> None:
    model = set_model(build_model("llama", "sdpa"), mode)
    expected = run(model, SENTENCE)[-1]
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["lsfa_attention"] == mode
    assert saved["is_causal"] is False

    reloaded = AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config._attn_implementation == "sdpa"  # the per-layer function is not saved ...
    assert restore_attention(reloaded) == parse_attention(mode, NUM_LAYERS)  # ... one call brings it back
    assert_unchanged(run(reloaded, SENTENCE)[-1], expected, "the reloaded model")


def test_restore_without_a_recorded_setting() -> None:
    model = build_model("llama", "eager")
    with pytest.raises(LsfaError, match="lsfa_attention"):
        restore_attention(model)
    assert restore_attention(model, default="full") == AttentionSpec("full")
    assert get_attention(model) == AttentionSpec("full")


def test_out_of_range_layers_name_the_model_size() -> None:
    model = build_model("llama", "sdpa")
    with pytest.raises(LsfaError, match="3 layers"):
        set_attention(model, "3")
    with pytest.raises(LsfaError, match="out of range"):
        set_attention(model, AttentionSpec("layers", (0, 7)))


def test_models_with_their_own_causal_buffer_are_refused() -> None:
    config = AutoConfig.for_model(
        "gpt_neo",
        vocab_size=100,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        attention_types=[[["global", "local"], 1]],
        max_position_embeddings=64,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = AutoModel.from_config(config)
    with pytest.raises(LsfaError, match="AttentionInterface"):
        set_attention(model, "full")
    assert set_attention(model, "causal") == AttentionSpec("causal")  # causal is the model as it is
    # The second line of defence, for a model that would use the interface but keep such a buffer:
    attention_modules = [module for module in model.modules() if type(module).__name__ == "GPTNeoSelfAttention"]
    assert attention_modules and all(_has_causal_buffer(module) for module in attention_modules)
    assert not _has_causal_buffer(build_model("gpt2", "sdpa").transformer.h[0].attn)


def test_unsupported_attention_implementation_is_refused(caplog) -> None:
    model = build_model("llama", "sdpa")
    model.config._attn_implementation_internal = "flex_attention"  # pretend: lsfa has no bidirectional path for it
    with caplog.at_level(logging.ERROR), pytest.raises(LsfaError, match="sdpa"):
        set_attention(model, "full")


def test_flash_attention_takes_full_and_causal_but_refuses_a_layer_subset() -> None:
    """FlashAttention-2 reads ``is_causal`` per call (config.is_causal), but takes no 4D mask for a subset."""
    model = build_model("llama", "sdpa")
    model.config._attn_implementation_internal = "flash_attention_2"  # pretend: the kernel cannot run on CPU
    assert str(set_attention(model, "full")) == "full" and model.config.is_causal is False
    with pytest.raises(LsfaError, match="use attn_implementation sdpa"):
        set_attention(model, "0")


def test_attention_module_called_without_a_mask_or_keyword_follows_its_flag() -> None:
    """Outside the model's forward nothing passes ``is_causal``: SDPA then reads ``module.is_causal``."""
    model = build_model("llama", "sdpa")
    attention, rotary = model.model.layers[0].self_attn, model.model.rotary_emb
    hidden = model.model.embed_tokens(SENTENCE)
    changed = model.model.embed_tokens(changed_sentence())
    positions = torch.arange(SENTENCE.shape[1])[None]

    def probe(states: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return attention(states, position_embeddings=rotary(states, positions), attention_mask=None)[0]

    for mode, sees_right in [("full", True), ("causal", False)]:
        set_attention(model, mode)
        assert sees_right_context(probe(hidden)[0, PROBE], probe(changed)[0, PROBE]) is sees_right, mode


# --------------------------------------------------------------------------------------------------------------
# The real default model (skipped until `lsfa models fetch smollm2-135m` has run)
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_folder():
    from lsfa.models.catalogue import resolve_model

    try:
        return resolve_model("smollm2-135m")
    except LsfaError as error:
        pytest.skip(f"default model not provisioned: {error}")


@pytest.mark.integration
def test_real_default_model_causal_vs_full(smollm2_folder) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder)
    model = AutoModel.from_pretrained(smollm2_folder, dtype=torch.float32).eval()
    inputs = tokenizer("EU rejects German call to boycott British lamb.", return_tensors="pt")

    def last_hidden() -> torch.Tensor:
        with torch.no_grad():
            return model(**inputs).last_hidden_state[0]

    unmodified = last_hidden()
    assert str(set_attention(model, "full")) == "full"
    full = last_hidden()
    set_attention(model, "groups=2:01")  # only the upper half (layers 15-29) looks right
    upper_half = last_hidden()
    set_attention(model, "causal")
    causal = last_hidden()

    assert_unchanged(causal, unmodified, "causal vs the unmodified model")
    assert_changed(full[0], causal[0], "LS-FA: the first token must see the sentence")
    assert_changed(upper_half[0], causal[0], "the upper half vs causal")
    assert_changed(upper_half[0], full[0], "the upper half vs full")


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_layer_subset_trains_after_an_inference_pass(impl: str) -> None:
    """The cached causal triangle is built once (maybe under inference_mode) and reused by training."""
    model = set_model(build_model("llama", impl), "1")
    with torch.inference_mode():
        model(input_ids=SENTENCE)
    model.train()
    loss = model(input_ids=SENTENCE, labels=torch.zeros_like(SENTENCE)).loss
    loss.backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None
