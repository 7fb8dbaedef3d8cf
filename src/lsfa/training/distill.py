"""Knowledge distillation (``lsfa distill``, config key ``distill``): a small student learns a trained tagger's
word-level distributions besides the gold tags.

The loss of a batch is ``(1 - w) * CE(gold) + w * T**2 * KL(teacher_T || student_T)``: the cross-entropy of
plain training and the KL divergence between the teacher's and the student's softmax at temperature ``T``
(scaled by ``T**2`` so its gradients keep their size as ``T`` changes, as in Hinton et al. 2015), both taken
at each word's first sub-token, where the gold label is trained (the rows' ``label_positions``). Because the
distributions are per word, the teacher and the student may use different tokenizers (a decoder teacher, an
encoder student). Sentences of unlabelled text files have no gold tags and add only the KL term.

The teacher runs once. Its temperature-free logits over its labels (the student adopts the teacher's label
list) are cached on disk, memory-mapped rather than held in RAM, and reused across epochs, resumed runs and
students: a cache folder per teacher and data (:func:`cache_key`) holds ``logits.npy`` (float32, one row per
word, sentences in order), ``offsets.npy`` (int64, where each sentence's words start, plus the total) and
``header.json`` (teacher folder and content hash, labels, data fingerprint, precision). The folder is written
under a temporary name and renamed into place, so a half-written cache is never read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsfa.data.align import IGNORE_INDEX
from lsfa.data.encode import EncodedSet, Example, concat_encoded, encode_sentences
from lsfa.data.text import split_words
from lsfa.data.types import Sentence
from lsfa.errors import DataFormatError, LsfaError
from lsfa.inference.tagger import Tagger, resolve_tagger_folder
from lsfa.models.meta import read_meta
from lsfa.settings import home_dir
from lsfa.training.config import DistillOptions, TrainConfig
from lsfa.version import __version__

CACHE_FORMAT = 1
"""Bumped when the cache's files change meaning; part of :func:`cache_key`."""
HEADER_FILE, LOGITS_FILE, OFFSETS_FILE = "header.json", "logits.npy", "offsets.npy"
TEACHER_CHUNK = 4096
"""Unlabelled texts go through the teacher this many at a time, written straight into the memory map."""
SKIPPED_IN_HASH = frozenset({"README.md"})
"""Files of a tagger folder that do not change its predictions (the model card)."""


# --- unlabelled text ----------------------------------------------------------------------------------------


def read_unlabelled(path: str | Path) -> list[list[str]]:
    """The word sequences of an unlabelled text file: a text per non-blank line, or, for ``.jsonl``, a JSON
    object with a string ``text`` per non-blank line; words are split as ``lsfa predict`` splits raw text."""
    path = Path(path)
    if not path.is_file():
        raise LsfaError(f"{path}: unlabelled text file not found")
    texts: list[list[str]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            text = _jsonl_text(line, path, number) if path.suffix.lower() == ".jsonl" else line
            words = [word.text for word in split_words(text)]
            if words:
                texts.append(words)
    return texts


def _jsonl_text(line: str, path: Path, number: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataFormatError(f"not a JSON object ({error.msg})", path, number) from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise DataFormatError('expected a JSON object with a string "text" field', path, number)
    return record["text"]


# --- the cache ---------------------------------------------------------------------------------------------


def teacher_hash(folder: Path) -> str:
    """SHA-256 of a tagger folder's files (names and contents, the model card aside): a retrained or edited
    teacher gets a new cache, a copied one keeps its cache."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in SKIPPED_IN_HASH):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def data_fingerprint(sentences: Sequence[Sequence[str]], documents: Sequence[int | None]) -> str:
    """SHA-256 of the words (and document ids, which document context reads) of every sentence, in order."""
    digest = hashlib.sha256()
    for words, document in zip(sentences, documents, strict=True):
        digest.update(json.dumps([document, list(words)], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def cache_key(teacher: str, data: str, precision: str) -> str:
    """The cache folder's name: teacher content, data and the teacher's precision (bf16 logits differ)."""
    return hashlib.sha256(f"{CACHE_FORMAT}:{teacher}:{data}:{precision}".encode()).hexdigest()[:24]


@dataclasses.dataclass
class TeacherCache:
    """A teacher's logits per word, memory-mapped: sentence ``s`` has rows ``offsets[s]:offsets[s + 1]``."""

    folder: Path
    header: dict[str, Any]
    logits: np.ndarray
    offsets: np.ndarray

    @classmethod
    def open(cls, folder: Path) -> TeacherCache:
        header = json.loads((folder / HEADER_FILE).read_text())
        logits = np.load(folder / LOGITS_FILE, mmap_mode="r")
        offsets = np.load(folder / OFFSETS_FILE)
        return cls(folder, header, logits, offsets)

    @property
    def labels(self) -> list[str]:
        return list(self.header["labels"])

    def sentence(self, index: int) -> np.ndarray:
        """The logits of one sentence's words, ``[words, labels]``."""
        return self.logits[self.offsets[index] : self.offsets[index + 1]]


def run_teacher(tagger: Tagger, sentences: Sequence[Sequence[str]], documents: Sequence[int] | None):
    """The teacher's fp32 logits per word of each sentence (``[words, labels]`` tensors); one module-level
    function, so tests can count the teacher's runs."""
    return tagger.predict_words(sentences, documents=documents).logits


def build_cache(
    folder: Path,
    teacher: Path,
    header: dict[str, Any],
    labelled: Sequence[Sentence],
    unlabelled: Sequence[Sequence[str]],
    precision: str,
) -> TeacherCache:
    """Run the teacher over the training sentences (with their documents, for a teacher trained with context)
    and the unlabelled texts, writing its logits into the memory map; the folder appears complete or not at all."""
    tagger = Tagger.load(teacher, precision=precision, decoding="argmax")
    lengths = [len(s.tokens) for s in labelled] + [len(words) for words in unlabelled]
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        logits = np.lib.format.open_memmap(
            staging / LOGITS_FILE, mode="w+", dtype=np.float32, shape=(int(offsets[-1]), len(tagger.labels))
        )
        batches = [(0, [s.tokens for s in labelled], [s.doc_id for s in labelled])]
        batches += [(len(labelled) + k, unlabelled[k : k + TEACHER_CHUNK], None)
                    for k in range(0, len(unlabelled), TEACHER_CHUNK)]  # fmt: skip
        for first, words, documents in batches:
            for k, sentence_logits in enumerate(run_teacher(tagger, words, documents) if words else []):
                logits[offsets[first + k] : offsets[first + k + 1]] = sentence_logits.numpy()
        logits.flush()
        del logits
        np.save(staging / OFFSETS_FILE, offsets)
        (staging / HEADER_FILE).write_text(json.dumps({**header, "n_words": int(offsets[-1])}, indent=2) + "\n")
        _move_into_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return TeacherCache.open(folder)


def _move_into_place(staging: Path, folder: Path) -> None:
    """Rename the finished cache into place; a process that finished the same cache first wins."""
    try:
        os.replace(staging, folder)
    except OSError:
        if not (folder / HEADER_FILE).is_file():
            raise


def cache_matches(folder: Path, header: dict[str, Any]) -> bool:
    """Whether ``folder`` holds a complete cache of this teacher, data and precision."""
    try:
        saved = json.loads((folder / HEADER_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return all(saved.get(key) == value for key, value in header.items() if key != "created_by")


# --- the loss ----------------------------------------------------------------------------------------------


def distillation_loss(
    logits: torch.Tensor,
    gold_loss: torch.Tensor | None,
    slots: torch.Tensor,
    teacher_logits: torch.Tensor,
    weight: float,
    temperature: float,
) -> torch.Tensor:
    """``(1 - weight) * gold_loss + weight * T**2 * KL(teacher_T || student_T)``, the KL averaged over the words
    of the batch (the sub-tokens where ``slots`` is not :data:`IGNORE_INDEX`, in row-major order, matching the
    rows of ``teacher_logits``). ``gold_loss`` is None for a batch without gold tags (unlabelled text only)."""
    student = logits[slots != IGNORE_INDEX].float() / temperature
    if student.shape[0]:
        teacher = teacher_logits.to(student.device).float() / temperature
        kl = torch.nn.functional.kl_div(
            student.log_softmax(-1), teacher.log_softmax(-1), reduction="batchmean", log_target=True
        )
    else:
        kl = logits.float().sum() * 0.0  # keeps the graph: every rank of a DDP step must backpropagate
    distilled = weight * temperature**2 * kl
    return distilled if gold_loss is None else (1 - weight) * gold_loss + distilled


def distill_step(model, inputs: dict[str, torch.Tensor], weight: float, temperature: float):
    """The model's outputs and the distillation loss of one collated batch (:class:`DistillCollator`)."""
    inputs = dict(inputs)
    slots, teacher = inputs.pop("teacher_slot"), inputs.pop("teacher_logits")
    if not bool((inputs["labels"] != IGNORE_INDEX).any()):
        del inputs["labels"]  # no gold tag in the batch: the model's cross-entropy would be the mean of nothing
    outputs = model(**inputs)
    return distillation_loss(outputs.logits, outputs.get("loss"), slots, teacher, weight, temperature), outputs


def distill_trainer_class(base: type, weight: float, temperature: float) -> type:
    """``base`` (the NER Trainer) with :func:`distill_step` as the training loss; evaluation batches carry no
    teacher and keep the plain loss. The loss is a mean per micro-batch, divided by gradient accumulation."""

    class DistillTrainer(base):
        loss_is_scaled_for_ga = False

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()  # the Trainer drops row keys the model does not take
            if "teacher_slot" not in self._signature_columns:
                self._signature_columns.append("teacher_slot")

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "teacher_slot" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss, outputs = distill_step(model, inputs, weight, temperature)
            return (loss, outputs) if return_outputs else loss

    return DistillTrainer


# --- rows and batches --------------------------------------------------------------------------------------


def teacher_slots(example: Example, offsets: np.ndarray) -> list[int]:
    """Per sub-token of ``example``, the cache row of the word it carries (at ``label_positions``), else
    :data:`IGNORE_INDEX`."""
    slots = [IGNORE_INDEX] * len(example.input_ids)
    for position, (sentence, word) in zip(example.label_positions, example.scored_words(), strict=True):
        slots[position] = int(offsets[sentence]) + word
    return slots


@dataclasses.dataclass
class DistillDataset(torch.utils.data.Dataset):
    """Training rows with their teacher slots: ``input_ids``, ``labels`` and ``teacher_slot``."""

    encoded: EncodedSet
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.encoded.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        row = self.encoded.examples[index]
        return {"input_ids": row.input_ids, "labels": row.labels, "teacher_slot": teacher_slots(row, self.offsets)}


@dataclasses.dataclass
class DistillCollator:
    """Wraps the training collator (padding or packing): the teacher slots go through it a second time in place
    of the labels, so they land on the same sub-tokens as the labels whatever packing or the padding side does;
    the teacher's logits of those words are read from the memory map."""

    base: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]
    logits: np.ndarray

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.base([{k: v for k, v in f.items() if k != "teacher_slot"} for f in features])
        slots = self.base([{"input_ids": f["input_ids"], "labels": f["teacher_slot"]} for f in features])["labels"]
        batch["teacher_slot"] = slots
        batch["teacher_logits"] = torch.from_numpy(np.asarray(self.logits[slots[slots != IGNORE_INDEX].numpy()]))
        return batch


# --- one run's distillation ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Distillation:
    """What a training run needs to distil: the options, the teacher's cache and the unlabelled texts."""

    options: DistillOptions
    cache: TeacherCache
    unlabelled: list[list[str]]

    @property
    def labels(self) -> list[str]:
        """The student's labels: the teacher's, in its order."""
        return self.cache.labels

    def training_rows(self, train_rows: EncodedSet, tokenizer, config: TrainConfig) -> EncodedSet:
        """The training rows plus the unlabelled texts' rows (no gold labels, sentence context)."""
        if not self.unlabelled:
            return train_rows
        extra = encode_sentences(tokenizer, self.unlabelled, None, max_length=config.max_length)
        return concat_encoded([train_rows, extra])

    def dataset(self, rows: EncodedSet) -> DistillDataset:
        return DistillDataset(rows, self.cache.offsets)

    def collator(self, base) -> DistillCollator:
        return DistillCollator(base, self.cache.logits)

    def trainer_class(self, base: type) -> type:
        return distill_trainer_class(base, self.options.weight, self.options.temperature)

    def record(self) -> dict[str, Any]:
        """What the tagger's metadata, metrics.json and model card say about its teacher."""
        header = self.cache.header
        return {
            "teacher": header["teacher"], "teacher_hash": header["teacher_hash"], "weight": self.options.weight,
            "temperature": self.options.temperature, "unlabelled": list(self.options.unlabelled),
            "unlabelled_texts": len(self.unlabelled), "cache": str(self.cache.folder),
        }  # fmt: skip


def teacher_labels(teacher: Path, sentences: Sequence[Sentence]) -> list[str]:
    """The teacher's labels, checked to cover every tag of the training split (the student is trained on them)."""
    labels = read_meta(teacher).labels
    missing = sorted({tag for s in sentences for tag in s.tags} - set(labels))
    if missing:
        raise LsfaError(
            f"{teacher}: the teacher's labels ({', '.join(labels)}) lack tags of the training split: "
            f"{', '.join(missing)}; distil on data with the teacher's tag set"
        )
    return labels


def prepare_distillation(
    config: TrainConfig, train_sentences: Sequence[Sentence], precision: str, log: Callable[[str], None] = print
) -> Distillation:
    """Read the unlabelled texts and open the teacher's cache for this data, running the teacher first when no
    cache matches. Under torchrun the first process builds it while the others wait, then they read it."""
    options = config.distill
    teacher = resolve_tagger_folder(options.teacher).resolve()
    teacher_labels(teacher, train_sentences)
    unlabelled = [words for path in options.unlabelled for words in read_unlabelled(path)]
    words = [s.tokens for s in train_sentences] + unlabelled
    documents = [s.doc_id for s in train_sentences] + [None] * len(unlabelled)
    header = {"format": CACHE_FORMAT, "teacher": str(teacher), "teacher_hash": teacher_hash(teacher),
              "labels": read_meta(teacher).labels, "data_fingerprint": data_fingerprint(words, documents),
              "n_sentences": len(words), "precision": precision, "logits": "teacher logits before any temperature",
              "created_by": f"lsfa {__version__}"}  # fmt: skip
    root = Path(options.cache_dir).expanduser() if options.cache_dir else home_dir() / "distill-cache"
    folder = root / cache_key(header["teacher_hash"], header["data_fingerprint"], precision)
    with _first_process_first():
        if cache_matches(folder, header):
            log(f"note: teacher distributions reused from {folder}")
        else:
            log(f"note: running the teacher {teacher} over {len(words)} sentences into {folder}")
            shutil.rmtree(folder, ignore_errors=True)  # a stale or damaged cache under this key
            build_cache(folder, teacher, header, train_sentences, unlabelled, precision)
    return Distillation(options, TeacherCache.open(folder), unlabelled)


def _first_process_first():
    """A context in which process 0 of a distributed run goes first (a no-op in a single process)."""
    import contextlib

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return contextlib.nullcontext()
    from accelerate import PartialState

    return PartialState().main_process_first()
