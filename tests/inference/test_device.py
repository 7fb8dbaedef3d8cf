"""``--device`` of ``lsfa predict``, ``lsfa evaluate`` and ``lsfa serve`` (an ``InferenceOptions`` field), and a
LoRA tagger built and merged in bf16 where that is exact (what ``Tagger.load`` does on a GPU for a bf16 base)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lsfa.errors import LsfaError
from lsfa.inference import server
from lsfa.inference import tagger as tagger_module
from lsfa.inference.options import InferenceOptions
from lsfa.inference.tagger import Tagger
from lsfa.models import saving
from lsfa.models.optimise import optimise_for_inference
from lsfa.models.placement import checkpoint_dtype, inference_load_dtype, resolve_device
from tests.inference.tiny_taggers import build_random
from tests.tiny import tiny_decoder_dir


def _no_gpu(monkeypatch) -> None:
    """This process sees no CUDA GPU (whatever the machine has), so the refusal path runs everywhere."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_cpu_runs_on_the_cpu(tiny_taggers) -> None:
    tagger = Tagger.load(tiny_taggers["rule"], precision="fp32", device="cpu")
    assert next(tagger.model.parameters()).device.type == "cpu"
    assert tagger.options.device == "cpu"
    assert [(e.text, e.label) for e in tagger("Bob Carter met Bill.")] == [("Bob Carter", "PER"), ("Bill", "PER")]


@pytest.mark.parametrize("name", ["gpu", "cuda1", "cuda:", "CPU", 3])
def test_a_bad_device_name_is_refused_before_loading(name) -> None:
    with pytest.raises(LsfaError, match=r"^--device: .*auto, cpu, cuda or cuda:N"):
        InferenceOptions.of(None, flags=True, device=name)


def test_none_is_auto() -> None:
    assert InferenceOptions.of(None, device=None).device == "auto" == InferenceOptions().device


def test_cuda_without_a_gpu_is_one_line_before_any_weight_loads(tiny_taggers, monkeypatch) -> None:
    _no_gpu(monkeypatch)
    monkeypatch.setattr(tagger_module, "load_tagger", lambda *a, **k: pytest.fail("weights loaded before the check"))
    for name in ("cuda", "cuda:1"):
        with pytest.raises(LsfaError, match=rf"^device {name}: no CUDA GPU is available on this machine") as error:
            Tagger.load(tiny_taggers["rule"], device=name)
        assert "\n" not in str(error.value)


def test_a_gpu_index_past_the_last_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(LsfaError, match=r"^device cuda:2: this machine has 2 CUDA GPU\(s\), cuda:0 to cuda:1$"):
        resolve_device("cuda:2")


def test_auto_is_the_cpu_without_a_gpu(monkeypatch) -> None:
    _no_gpu(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device(None)


@pytest.mark.parametrize("command", ["predict", "evaluate", "serve"])
def test_the_commands_refuse_cuda_without_a_gpu_in_one_line(command, tiny_taggers, monkeypatch, capsys) -> None:
    from lsfa.cli import main

    _no_gpu(monkeypatch)
    monkeypatch.setattr(server, "run_server", lambda *a, **k: pytest.fail("served without a GPU"))
    extra = {"predict": ["--text", "Bob"], "evaluate": ["--corpus", "conll2003"], "serve": []}[command]
    folder = str(tiny_taggers["rule"])
    monkeypatch.setattr(sys, "argv", ["lsfa", command, "--model-dir", folder, *extra, "--device", "cuda"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "device cuda: no CUDA GPU is available on this machine" in lines[0], lines


def test_serve_passes_its_device_to_the_tagger(tiny_taggers, monkeypatch) -> None:
    from lsfa.cli import main

    seen = {}
    monkeypatch.setattr(server, "run_server", lambda app, host, port, settings: seen.update(app=app))
    folder = str(tiny_taggers["rule"])
    monkeypatch.setattr(sys, "argv", ["lsfa", "serve", "--model-dir", folder, "--precision", "fp32", "--device", "cpu"])
    main()
    assert seen["app"].state.tagger.options.device == "cpu"


# --- a bf16 base merged in bf16 --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bf16_lora_tagger(tmp_path_factory) -> Path:
    """A LoRA tagger over a tiny llama stored in bf16, as the paper's hub checkpoints are."""
    root = tmp_path_factory.mktemp("bf16")
    base = tiny_decoder_dir(root / "fp32-base")
    from transformers import AutoModel

    AutoModel.from_pretrained(base, dtype=torch.bfloat16).save_pretrained(root / "base")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (base / name).exists():
            (root / "base" / name).write_bytes((base / name).read_bytes())
    return build_random(root / "base", root / "tagger", lora=True)


def test_the_bf16_base_says_so(bf16_lora_tagger) -> None:
    config = saving.base_config(saving.read_meta(bf16_lora_tagger))
    assert checkpoint_dtype(config) == torch.bfloat16


def test_a_lora_merge_in_bf16_equals_the_fp32_merge_then_the_cast(bf16_lora_tagger) -> None:
    """The memory-saving path (a bf16 base, merged in bf16) must give bit for bit the weights of the fp32 merge
    rounded afterwards, for bf16 autocast and bf16-full alike; run on the CPU here, as it would on a GPU."""
    for precision in ("bf16", "bf16-full"):
        reference, _, _ = saving.load_tagger(bf16_lora_tagger, merge=True, device="cpu")
        half, _, _ = saving.load_tagger(bf16_lora_tagger, merge=True, device="cpu", base_dtype=torch.bfloat16)
        reference, half = optimise_for_inference(reference, precision), optimise_for_inference(half, precision)
        expected, got = reference.state_dict(), half.state_dict()
        assert expected.keys() == got.keys()
        for name, tensor in expected.items():
            assert got[name].dtype == tensor.dtype, (precision, name)
            assert torch.equal(got[name], tensor), (precision, name)
        assert got["score.weight"].dtype == torch.bfloat16 and any(t.dtype == torch.float32 for t in got.values()) == (
            precision == "bf16"
        )


def test_the_half_build_is_chosen_only_where_it_is_exact(bf16_lora_tagger) -> None:
    config = saving.base_config(saving.read_meta(bf16_lora_tagger))
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert inference_load_dtype(config, "bf16", cuda) == torch.bfloat16
    assert inference_load_dtype(config, "bf16-full", cuda) == torch.bfloat16
    assert inference_load_dtype(config, "fp32", cuda) == torch.float32  # fp32 weights wanted: build them in fp32
    assert inference_load_dtype(config, "fp16", cuda) == torch.float32  # fp16 != the stored bf16: no exact build
    assert inference_load_dtype(config, "bf16", cpu) == torch.float32  # the CPU keeps the fp32 merged cache
    config.dtype = torch.float32
    assert inference_load_dtype(config, "bf16", cuda) == torch.float32  # an fp32 checkpoint stays fp32
