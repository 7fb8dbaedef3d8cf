"""``lsfa bench`` on a tiny tagger, and the fast inference paths it measures.

No timing is asserted (the machine is shared); the tests check that every figure is produced, that the
optimised paths predict what the plain path predicts, and that the batch plans lose no row.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lsfa.cli import app
from lsfa.data.encode import encode_sentences
from lsfa.inference.predictor import predict_encoded, predict_words
from lsfa.machine import cpu_label
from lsfa.models import packing
from lsfa.models.classifier import apply_lora, build_token_classifier, load_tokenizer
from lsfa.models.optimise import optimise_for_inference
from lsfa.models.saving import TaggerMeta, save_tagger
from tests.tiny import CORPUS, tiny_decoder_dir, tiny_encoder_dir
from tests.tolerances import assert_changed, assert_unchanged

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
NAMES = {"Peter": "PER", "Smith": "PER", "Paris": "LOC", "London": "LOC"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """A tiny LoRA tagger saved as ``lsfa train`` saves one, its base model, an encoder and a corpus."""
    root = tmp_path_factory.mktemp("bench")
    decoder = tiny_decoder_dir(root / "decoder", "llama")
    encoder = tiny_encoder_dir(root / "encoder")
    torch.manual_seed(0)
    model = apply_lora(build_token_classifier(decoder, LABELS, "full"), r=4, alpha=8)
    with torch.no_grad():  # a non-zero adapter, so merged and unmerged weights really differ in layout
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    meta = TaggerMeta(base_model=str(decoder), model_type="llama", labels=LABELS)
    save_tagger(model, load_tokenizer(decoder), root / "tagger", meta)
    rng = random.Random(0)
    lines = []
    for _ in range(24):
        for _ in range(rng.randint(1, 12)):
            word = rng.choice([*NAMES, "the", "visited", "in", ".", "Zürich"])
            lines.append(f"{word} {'B-' + NAMES[word] if word in NAMES else 'O'}")
        lines.append("")
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    return {"root": root, "decoder": decoder, "encoder": encoder, "tagger": root / "tagger"}


def _bench_args(workspace, out: Path, *extra: str) -> list[str]:
    return [
        "bench", "--model-dir", str(workspace["tagger"]), "--corpus", str(workspace["root"] / "test.txt"),
        "--split", "test", "--json", str(out), "--sentences", "16", "--train-steps", "2",
        "--latency-sentences", "3", "--rounds", "2", "--ablation-sentences", "6",
        "--matmul-size", "64", "--matmul-seconds", "0.01", *extra,
    ]  # fmt: skip


def test_bench_json_has_every_figure(workspace, tmp_path):
    out = tmp_path / "bench.json"
    markdown = tmp_path / "performance.md"
    args = _bench_args(
        workspace, out, "--compare", "--encoder-model", str(workspace["encoder"]), "--markdown", str(markdown)
    )
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(out.read_text())

    inference = result["inference"]
    for variant in ("reference", "optimised"):
        row = inference[variant]
        assert row["sentences"] == 16
        for key in ("sentences_per_second", "words_per_second", "tokens_per_second", "seconds"):
            assert row[key] > 0
        assert row["memory"]["peak_mb"] > 0
        latency = result["latency"][variant]
        assert latency["sentences"] == 3 and latency["mean_ms"] > 0 and latency["std_ms"] >= 0
    assert inference["reference"]["precision"] == "fp32" and inference["reference"]["batch_size"] == 8
    assert "unmerged" in inference["reference"]["note"]
    assert inference["speedup"] > 0 and result["latency"]["speedup"] > 0
    agreement = inference["agreement"]
    assert agreement["words"] == result["data"]["words"]
    assert 0 <= agreement["identical_tags"] <= 1
    assert set(agreement["f1"]) == {"reference", "optimised"}
    assert inference["mfu"]["mfu"] > 0 and inference["mfu"]["peak_gflops"] > 0

    assert result["peak"]["fp32"]["gflops"] > 0
    assert "bf16" in result["peak"]
    training = result["training"]
    for variant in ("reference", "optimised"):
        assert training[variant]["steps"] == 2 and training[variant]["tokens_per_second"] > 0
    assert training["reference"]["precision"] == "fp32" and training["reference"]["batch_order"] == "random"
    assert training["optimised"]["batch_order"] == "random"  # the reference's batches, packed
    assert training["optimised"]["batching"].startswith("packed rows")
    assert training["optimised"]["padded_tokens"] < training["reference"]["padded_tokens"]
    assert training["speedup"] > 0

    threads = result["threads"]
    assert threads["reference"] >= 1 and threads["optimised"] >= 1 and "torch_threads" in threads
    assert result["memory"]["process_peak_rss_mb"] > 0
    names = [row["name"] for row in result["ablation"]]
    assert names[:2] == ["reference", "+ merged LoRA"]
    assert any(name.startswith("+ packing") for name in names)
    if inference["optimised"]["precision"] == "bf16-full":  # fastest: bf16-full where bf16 is measured faster
        assert names.index("+ bf16 weights cached") < names.index("+ every weight in bf16 (bf16-full)")
        assert training["optimised"]["precision"] == "bf16"  # training keeps fp32 master weights
        assert training["optimised"]["kernels"] == "fast"
    pack_tokens = result["options"]["pack_tokens"]  # auto_pack_tokens of the benchmark rows
    assert pack_tokens % 32 == 0 and 64 <= pack_tokens <= 256
    assert f"+ packing ({pack_tokens})" in names

    encoder = result["compare"]["encoder"]
    assert encoder["sentences"] == 16 and encoder["ratio_to_lsfa_optimised"] > 0
    assert "untrained head" in encoder["note"]
    spacy = result["compare"]["spacy"]
    assert "skipped" in spacy or spacy["sentences_per_second"] > 0
    assert set(result["targets"]) >= {"inference_speedup", "inference_f1", "training_speedup", "mfu"}
    assert "Targets" in outcome.output  # the readable table is printed too
    report = markdown.read_text()
    assert "## Targets" in report and "## Training" in report and cpu_label(result["machine"]) in report
    _check_pareto_table(out, tmp_path / "pareto")


def _check_pareto_table(bench_json: Path, root: Path) -> None:
    """scripts/pareto_plot.py reads real bench files: decoder points per K and precision, compared peers."""
    import runpy
    import shutil

    root.mkdir()
    for name in ("k30-auto.json", "k10-int8.json", "peer-minilm-l6.json"):
        shutil.copy(bench_json, root / name)
    pareto = runpy.run_path(str(Path(__file__).parents[2] / "scripts" / "pareto_plot.py"))
    pareto["main"](root)
    rows = (root / "pareto.md").read_text().splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows[:2]] == ["| smollm2-135m K=30", "| smollm2-135m K=10"]
    assert any(row.startswith("| minilm-l6 | encoder | - |") for row in rows)  # untrained head: speed, no F1
    assert (root / "pareto.png").stat().st_size > 0


def test_bench_reference_and_optimised_agree(workspace, tmp_path):
    """With a real (non-zero) adapter, merging + bf16 + packing still gives the unmerged fp32 tags."""
    out = tmp_path / "bench.json"
    run_options = ["--max-batch-tokens", "1024", "--pack-tokens=64", "--device", "cpu"]  # generated flags
    outcome = CliRunner().invoke(app, _bench_args(workspace, out, "--train-steps", "0", "--pack", "on", *run_options))
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(out.read_text())
    optimised = result["inference"]["optimised"]
    assert optimised["pack"] is True and (optimised["max_batch_tokens"], optimised["pack_tokens"]) == (1024, 64)
    assert result["inference"]["agreement"]["identical_tags"] >= 0.97
    assert abs(result["inference"]["agreement"]["f1_difference_points"]) <= 5
    assert result["training"] == {"skipped": "--train-steps 0"}


def test_more_taggers_are_timed_beside_the_main_one_on_the_same_sentences(workspace, tmp_path):
    """``--tagger-dir NAME=DIR`` times another tagger in the same rounds (a frontier in one run): the same folder
    under another name runs the optimised path's settings, so it tags exactly as the optimised path does."""
    out = tmp_path / "bench.json"
    extra = ["--train-steps", "0", "--ablation-sentences", "0", "--tagger-dir", f"copy={workspace['tagger']}"]
    outcome = CliRunner().invoke(app, _bench_args(workspace, out, *extra))
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(out.read_text())
    copy = result["compare"]["copy"]
    assert copy["sentences"] == 16 and copy["sentences_per_second"] > 0 and copy["memory"]["peak_mb"] > 0
    assert copy["f1"] == pytest.approx(result["inference"]["agreement"]["f1"]["optimised"], abs=1e-12)
    assert result["latency"]["copy"]["sentences"] == 3 and "encoder" not in result["compare"]


def test_bench_bad_options_are_one_line_errors(workspace, tmp_path):
    outcome = CliRunner().invoke(app, _bench_args(workspace, tmp_path / "x.json", "--pack", "maybe"))
    assert outcome.exit_code != 0
    assert "--pack must be auto, on or off" in str(outcome.exception or outcome.output)
    outcome = CliRunner().invoke(app, _bench_args(workspace, tmp_path / "x.json", "--precision", "fp8"))
    expected = "--precision must be one of fastest, auto, fp32, bf16, fp16, bf16-full, int8"
    assert expected in str(outcome.exception or outcome.output)
    outcome = CliRunner().invoke(app, _bench_args(workspace, tmp_path / "x.json", "--pack-tokens", "0"))
    assert "--pack-tokens: Input should be greater than or equal to 8" in str(outcome.exception or outcome.output)
    outcome = CliRunner().invoke(app, _bench_args(workspace, tmp_path / "x.json", "--max-batch-tokens", "null"))
    assert "--max-batch-tokens: lsfa bench times token-budget batches" in str(outcome.exception or outcome.output)
    outcome = CliRunner().invoke(app, _bench_args(workspace, tmp_path / "x.json", "--batch-size", "4"))
    assert outcome.exit_code == 2 and "No such option: --batch-size" in outcome.output  # not a flag bench varies
    outcome = CliRunner().invoke(app, ["bench", "--model-dir", str(tmp_path), "--corpus", "x"])
    assert "not an lsfa tagger folder" in str(outcome.exception or outcome.output)
    outcome = CliRunner().invoke(app, _bench_args(workspace, tmp_path / "x.json", "--tagger-dir", f"k={tmp_path}"))
    assert f"--tagger-dir k={tmp_path}: {tmp_path} is not a tagger folder" in str(outcome.exception or outcome.output)
    spacy_named = f"spacy={workspace['tagger']}"
    outcome = CliRunner().invoke(app, _bench_args(workspace, tmp_path / "x.json", "--tagger-dir", spacy_named))
    assert "--tagger-dir: name 'spacy' is used twice or taken" in str(outcome.exception or outcome.output)


def test_spacy_missing_is_skipped(monkeypatch):
    import builtins

    from lsfa.bench.compare import spacy_variant

    real_import = builtins.__import__

    def no_spacy(name, *args, **kwargs):
        if name == "spacy":
            raise ImportError("no spacy")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_spacy)
    variant, why = spacy_variant("en_core_web_sm")
    assert variant is None and "not installed" in why


def test_spacy_pipeline_tags_the_same_words(tmp_path):
    spacy = pytest.importorskip("spacy")
    from lsfa.bench.compare import spacy_variant

    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ner")
    for label in ("PER", "LOC"):
        ner.add_label(label)
    nlp.initialize()
    (tmp_path / "spacy" / "output").mkdir(parents=True)
    nlp.to_disk(tmp_path / "spacy" / "output" / "model-best")  # laid out like an lsfa spaCy-peer run
    variant, why = spacy_variant(str(tmp_path), LABELS)
    assert variant is not None, why
    assert variant.same_types
    sentences = [["Peter", "visited", "Paris"], ["", "London"], ["."]]
    variant.warm_up(sentences)
    variant.run(sentences, [0, 1, 2])
    assert [len(variant.predictions[k]) for k in range(3)] == [3, 2, 1]
    assert variant.throughput()["sentences"] == 3


# --- the fast inference paths ---------------------------------------------------------------------------


def _sentences() -> list[list[str]]:
    return [line.split() for line in CORPUS[:6]] + [["a"], ["Paris", "."], ["x", "y", "z"]]


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory) -> Path:
    return tiny_decoder_dir(tmp_path_factory.mktemp("pack") / "decoder", "llama")


@pytest.mark.parametrize("attention", ["full", "causal", "0"])
def test_packing_gives_the_unpacked_predictions(decoder_dir, attention):
    torch.manual_seed(1)
    model = build_token_classifier(decoder_dir, LABELS, attention).eval()
    tokenizer = load_tokenizer(decoder_dir)
    sentences = _sentences()
    plain = predict_words(model, tokenizer, sentences, batch_size=3)
    packed = predict_words(model, tokenizer, sentences, pack=True, pack_tokens=40, max_batch_tokens=80)
    budget = predict_words(model, tokenizer, sentences, max_batch_tokens=50)
    assert packed.tags == plain.tags == budget.tags
    for ours, theirs in zip(packed.scores, plain.scores, strict=True):
        assert ours == pytest.approx(theirs, abs=1e-5)


def test_packed_logits_match_each_sentence_alone_and_mask_matters(decoder_dir):
    """Logit-level check, plus a negative control: without the block-diagonal mask the logits change."""
    torch.manual_seed(2)
    model = build_token_classifier(decoder_dir, LABELS, "full").eval()
    tokenizer = load_tokenizer(decoder_dir)
    rows = [example.input_ids for example in encode_sentences(tokenizer, _sentences()[:3]).examples]
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([ids])).logits[0] for ids in rows]
        inputs, offsets = packing.build_inputs([rows], tokenizer.pad_token_id, torch.device("cpu"))
        packed = model(**inputs).logits[0]
        leaky = model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"]).logits[0]
    for ids, offset, logits in zip(rows, offsets[0], alone, strict=True):
        assert_unchanged(packed[offset : offset + len(ids)], logits, "a packed sentence")  # other shapes: noise only
    second = slice(offsets[0][1], offsets[0][1] + len(rows[1]))
    assert_changed(leaky[second], alone[1], "a sentence that sees its pack neighbour")


@pytest.mark.parametrize("attention", ["full", "causal"])
def test_rounded_widths_change_shapes_not_predictions(decoder_dir, attention):
    """pad_to_multiple_of only adds padding: every batch's width becomes a multiple, the tags stay, and the
    probabilities move by reordering noise at most (packed rows and padded batches alike)."""
    torch.manual_seed(4)
    model = build_token_classifier(decoder_dir, LABELS, attention).eval()
    tokenizer = load_tokenizer(decoder_dir)
    sentences = _sentences()
    widths: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        for options in ({"batch_size": 3}, {"pack": True, "pack_tokens": 40, "max_batch_tokens": 80}):
            plain = predict_words(model, tokenizer, sentences, **options)
            widths.clear()
            rounded = predict_words(model, tokenizer, sentences, pad_to_multiple_of=16, **options)
            assert widths and all(width % 16 == 0 for width in widths), widths
            assert rounded.tags == plain.tags
            for ours, theirs in zip(rounded.logits, plain.logits, strict=True):
                assert_unchanged(ours, theirs, f"logits with widths rounded to 16 ({options})")
    finally:
        hook.remove()
    assert packing.round_up(17, 16) == 32 and packing.round_up(32, 16) == 32 and packing.round_up(5, None) == 5


def test_packed_padding_rows_do_not_produce_nan(decoder_dir):
    model = build_token_classifier(decoder_dir, LABELS, "full").eval()
    rows = [[[5, 6, 7, 8, 9]], [[5, 6]]]  # the second row is padded
    inputs, _ = packing.build_inputs(rows, 1, torch.device("cpu"))
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def _model_and_autocast_predictions(decoder_dir):
    """A seeded tiny tagger, its tokenizer, the test sentences and their plain bf16-autocast predictions."""
    torch.manual_seed(3)
    model = build_token_classifier(decoder_dir, LABELS, "full").eval()
    tokenizer = load_tokenizer(decoder_dir)
    sentences = _sentences()
    return model, tokenizer, sentences, predict_words(model, tokenizer, sentences, precision="bf16")


def test_cached_bf16_weights_predict_like_autocast(decoder_dir):
    """Storing linear weights in bf16 once is bit-identical to letting autocast cast them every call."""
    model, tokenizer, sentences, autocast = _model_and_autocast_predictions(decoder_dir)
    fast = optimise_for_inference(model, "bf16")
    cached = predict_words(fast, tokenizer, sentences, precision="bf16")
    assert cached.tags == autocast.tags and cached.scores == autocast.scores
    from lsfa.errors import LsfaError

    with pytest.raises(LsfaError, match="precision='bf16'"):
        predict_words(fast, tokenizer, sentences, precision="fp32")


def test_bf16_full_stores_every_weight_in_bf16_and_predicts_close_to_autocast(decoder_dir):
    """bf16-full is not bit-identical to autocast (bf16 residual stream), but the tags barely move."""
    model, tokenizer, sentences, autocast = _model_and_autocast_predictions(decoder_dir)
    from lsfa.errors import LsfaError

    with pytest.raises(LsfaError, match="needs the weights rewritten first"):
        predict_words(model, tokenizer, sentences, precision="bf16-full")
    full = optimise_for_inference(model, "bf16-full")
    assert {p.dtype for p in full.parameters()} == {torch.bfloat16}
    predicted = predict_words(full, tokenizer, sentences, precision="bf16-full", pack=True)
    tags = [tag for sentence in autocast.tags for tag in sentence]
    same = sum(a == b for a, b in zip(tags, [t for s in predicted.tags for t in s], strict=True))
    assert same / len(tags) >= 0.95
    with pytest.raises(LsfaError, match="precision='bf16-full'"):
        predict_words(full, tokenizer, sentences, precision="bf16")


def test_auto_pack_length_holds_about_three_average_rows():
    assert packing.auto_pack_tokens([22] * 10) == 96
    assert packing.auto_pack_tokens([5, 7, 9]) == 64
    assert packing.auto_pack_tokens([40, 44]) == 128
    assert packing.auto_pack_tokens([400]) == 256
    assert packing.auto_pack_tokens([]) == 64


def test_merging_lora_keeps_predictions(decoder_dir):
    torch.manual_seed(4)
    model = apply_lora(build_token_classifier(decoder_dir, LABELS, "full"), r=4, alpha=8).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    tokenizer = load_tokenizer(decoder_dir)
    sentences = _sentences()
    unmerged = predict_words(model, tokenizer, sentences, batch_size=8)
    merged = predict_words(optimise_for_inference(model, "fp32"), tokenizer, sentences, batch_size=8)
    assert merged.tags == unmerged.tags
    for ours, theirs in zip(merged.scores, unmerged.scores, strict=True):
        assert ours == pytest.approx(theirs, abs=1e-5)


def test_frozen_bf16_weights_train_like_autocast(decoder_dir):
    """Casting the frozen base weights once gives the loss and LoRA gradients autocast gives."""
    import copy

    from lsfa.models.optimise import cast_frozen_linear_weights

    torch.manual_seed(5)
    model = apply_lora(build_token_classifier(decoder_dir, LABELS, "full"), r=4, alpha=8)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)
    cast = copy.deepcopy(model)
    assert cast_frozen_linear_weights(cast) > 0
    ids, labels = torch.randint(3, 200, (2, 9)), torch.randint(0, len(LABELS), (2, 9))
    losses, grads = [], []
    for candidate in (model, cast):
        candidate.train()
        torch.manual_seed(6)  # the same LoRA dropout masks
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = candidate(input_ids=ids, labels=labels).loss
        loss.backward()
        losses.append(loss.item())
        grads.append([p.grad.clone() for p in candidate.parameters() if p.requires_grad])
    # Autocast casts the fp32 weights to the same bf16 values that were stored: the same numbers go into the
    # same kernels, so only reordering noise may differ (bf16 rounding itself is the same on both sides).
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for ours, theirs in zip(*grads, strict=True):
        assert_unchanged(ours, theirs, "a LoRA gradient")
    assert all(p.dtype == torch.float32 for p in cast.parameters() if p.requires_grad)


def test_reference_order_is_file_order(decoder_dir):
    model = build_token_classifier(decoder_dir, LABELS, "full").eval()
    tokenizer = load_tokenizer(decoder_dir)
    encoded = encode_sentences(tokenizer, _sentences())
    calls: list[int] = []
    original = model.forward

    def spy(**inputs):
        calls.append(inputs["input_ids"].shape[0])
        return original(**inputs)

    model.forward = spy
    id2label = dict(enumerate(LABELS))
    predict_encoded(model, encoded, id2label, tokenizer.pad_token_id, [len(s) for s in _sentences()],
                    batch_size=4, sort_by_length=False)  # fmt: skip
    assert calls == [4, 4, 1]


# --- batch plans ------------------------------------------------------------------------------------------


def test_token_budget_batches_cover_every_row_within_budget():
    rng = random.Random(5)
    lengths = [rng.randint(1, 60) for _ in range(200)] + [300]
    batches = packing.token_budget_batches(lengths, 256)
    seen = sorted(k for batch in batches for k in batch.examples)
    assert seen == list(range(len(lengths)))
    for batch in batches:
        widest = max(lengths[k] for k in batch.examples)
        assert widest * len(batch.examples) <= 256 or len(batch.examples) == 1
        padded = widest * len(batch.examples)
        assert 1 - sum(lengths[k] for k in batch.examples) / padded <= 0.1 or len(batch.examples) == 1


def test_packs_respect_their_length_and_lose_nothing():
    rng = random.Random(6)
    lengths = [rng.randint(1, 50) for _ in range(300)] + [400]
    packs = packing.plan_packs(lengths, 128)
    assert sorted(k for pack in packs for k in pack) == list(range(len(lengths)))
    for pack in packs:
        assert sum(lengths[k] for k in pack) <= 128 or len(pack) == 1
    batches = packing.packed_batches(lengths, 128, 512)
    assert sorted(k for batch in batches for k in batch.examples) == list(range(len(lengths)))


def test_length_grouped_training_batches_cover_every_row():
    from lsfa.bench.training import length_grouped_batches, random_batches

    rng = random.Random(7)
    lengths = [rng.randint(1, 80) for _ in range(130)]
    for make in (random_batches, length_grouped_batches):
        batches = make(lengths, 8, random.Random(0))
        assert sorted(k for batch in batches for k in batch) == list(range(130))
    grouped = length_grouped_batches(lengths, 8, random.Random(0))
    assert max(lengths[k] for k in grouped[0]) == max(lengths)
    spread = sum(max(lengths[k] for k in b) - min(lengths[k] for k in b) for b in grouped)
    shuffled = sum(max(lengths[k] for k in b) - min(lengths[k] for k in b) for b in random_batches(lengths, 8, rng))
    assert spread < shuffled


def test_targets_are_checked_against_the_figures():
    from lsfa.bench.report import targets

    result = {
        "inference": {"speedup": 6.5, "agreement": {"f1_difference_points": -0.4}, "mfu": {"mfu": 0.2}},
        "training": {"speedup": 3.1},
    }
    checked = targets(result)
    assert checked["inference_speedup"]["met"] is True
    assert checked["inference_f1"]["met"] is False
    assert checked["training_speedup"]["met"] is True
    assert checked["mfu"]["met"] is False
    assert targets({})["inference_speedup"]["met"] is None


def test_balanced_packs_keep_every_row_and_even_out_the_loads():
    lengths = [30, 25, 22, 20, 18, 12, 9, 4]  # 140 tokens: two packs of 70 against first-fit's 96 + 44
    packs = packing.balanced_packs(lengths, 96)
    assert sorted(k for pack in packs for k in pack) == list(range(len(lengths)))
    loads = sorted(sum(lengths[k] for k in pack) for pack in packs)
    assert len(packs) == 2 and loads[-1] - loads[0] <= max(lengths)
    assert max(loads) < max(sum(lengths[k] for k in pack) for pack in packing.plan_packs(lengths, 96))
    assert packing.balanced_packs([], 96) == [] and packing.balanced_packs([500], 96) == [[0]]


def test_bench_int8_path_reports_speed_and_f1(workspace, tmp_path):
    """precision int8: dynamic int8 linear layers on CPU, measured and scored beside the reference."""
    out = tmp_path / "bench.json"
    outcome = CliRunner().invoke(app, _bench_args(workspace, out, "--precision", "int8", "--train-steps", "0"))
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(out.read_text())
    assert result["inference"]["optimised"]["precision"] == "int8"
    assert "int8" in result["inference"]["optimised"]["note"] or "int8" in outcome.output
    assert set(result["inference"]["agreement"]["f1"]) == {"reference", "optimised"}
    assert "+ int8 linear layers" in [row["name"] for row in result["ablation"]]


def test_int8_tagger_keeps_the_fp32_tags_on_a_tiny_model(workspace):
    from lsfa.inference.tagger import Tagger

    words = [["Peter", "visited", "Zürich", "."], ["the", "Anna", "in", "Paris"]]
    exact = Tagger.load(workspace["tagger"], precision="fp32", decoding="argmax").predict_words(words)
    int8 = Tagger.load(workspace["tagger"], precision="int8", decoding="argmax")
    assert {type(m).__name__ for m in int8.model.modules()} >= {"Linear"}  # torch's dynamic quantised Linear
    assert any("quantized" in type(m).__module__ for m in int8.model.modules())
    kept = {name: type(m) for name, m in int8.model.named_modules() if name.endswith(("down_proj", "score"))}
    assert kept and set(kept.values()) == {torch.nn.Linear}  # the outlier-prone projections stay fp32
    got = int8.predict_words(words)
    same = sum(a == b for x, y in zip(exact.tags, got.tags, strict=True) for a, b in zip(x, y, strict=True))
    assert same / sum(len(x) for x in words) >= 0.75  # int8 rounding may flip a near-tie on a random tiny model
