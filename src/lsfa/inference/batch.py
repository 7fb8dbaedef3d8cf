"""Streaming, resumable batch prediction over a file (``lsfa predict --input``), in one process or N workers.

Why streaming: an input may be larger than memory (tens of millions of abstracts). The file is read twice, one
line at a time: a first pass checks every line (a bad line 10 million fails in seconds, before the model
loads, naming file and line) and counts the records; the second reads ``chunk`` records at a time, tags them,
writes their output lines whole and flushes. Memory depends on the chunk, never on the file.

Why chunks are fixed by position in the file: the predictor sorts a chunk by length into batches, and the
composition of a batch can change the last bits of a score. A chunk is therefore always records
``[k * chunk, (k + 1) * chunk)`` of the file (for a tagger trained with document context on CoNLL input it is
closed at the next document start instead, so documents keep their context, up to ``MAX_CHUNKS_PER_DOCUMENT``
chunks), whether the run is resumed, split into shards or neither. That is what makes a resumed output and the
merged output of N workers byte-identical to one uninterrupted process (with the same threads per process).

Why a ``.partial`` file: output goes to ``.NAME.partial`` beside ``NAME`` and is renamed into place when complete,
so an interrupted run never leaves a truncated output that looks finished. ``--resume`` continues it: a last line
without its line end (or a CoNLL sentence without its blank line) is cut off, the complete units are counted
(JSON lines, or CoNLL sentences), those records are skipped and the chunk holding the first missing one is tagged
again. A state file ``.NAME.partial.json`` records the input (size, modification time), the tagger and run
options, formats, chunk size and shards, so a resume against a changed input, another tagger or other settings
is refused rather than silently mixed.

Workers: ``--workers N`` cuts the records into N contiguous shards at chunk boundaries (balanced by record
count), runs N spawned processes that each load the tagger and write their shard through the same code into
``.NAME.partial.shards/``, then concatenates the shards in order into the output (atomic rename). Each shard is
resumable on its own.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from lsfa.data.text import split_words
from lsfa.data.types import Sentence
from lsfa.errors import DataFormatError, LsfaError
from lsfa.flags import flag_of
from lsfa.inference import files
from lsfa.inference.tagger import Tagger, resolve_tagger_folder
from lsfa.models.meta import META_FILE, read_meta

DEFAULT_CHUNK = 256
"""Documents read, tagged and written at a time: enough for the predictor to fill length-sorted batches, few
enough that memory stays small."""
MAX_CHUNKS_PER_DOCUMENT = 16
"""A document-context chunk waits for a document start at most this many chunks long, so one huge document
(a CoNLL file without ``-DOCSTART-`` lines) still cannot fill memory."""
_COPY_BYTES = 1 << 20

Item = files.Record | Sentence


@dataclass(frozen=True)
class Source:
    """What to tag and how to write it; picklable, so a worker process gets it whole.

    ``path`` is a real file (stdin is copied to one first), ``shown`` names it in errors. ``sep`` and
    ``has_docstart`` are the CoNLL shape the first pass found (for writing CoNLL output)."""

    path: str
    shown: str
    input_format: str
    output_format: str
    chunk: int = DEFAULT_CHUNK
    by_document: bool = False
    sep: str = " "
    has_docstart: bool = False

    @property
    def unit(self) -> str:
        """What one output unit is called in the summary line."""
        return "sentences" if self.input_format == "conll" else "documents"


@dataclass(frozen=True)
class Survey:
    """What the first pass learned: the source (with its CoNLL shape) and the size of each chunk."""

    source: Source
    chunk_sizes: list[int] = field(default_factory=list)

    @property
    def n_records(self) -> int:
        return sum(self.chunk_sizes)


@contextlib.contextmanager
def input_file(path: str) -> Iterator[tuple[str, str]]:
    """``(path, shown)`` of the input: the file itself, or stdin copied to a temporary file (it is read twice:
    checked, then tagged), removed afterwards."""
    if path != files.STDIN:
        yield path, path
        return
    with tempfile.NamedTemporaryFile(prefix="lsfa-stdin-", delete=False) as copy:
        shutil.copyfileobj(sys.stdin.buffer, copy, _COPY_BYTES)
    try:
        yield copy.name, "<stdin>"
    finally:
        os.unlink(copy.name)


def document_context(model_dir: str) -> bool:
    """Whether the tagger was trained with document context (read from its folder, before the weights load):
    its CoNLL chunks then close at document starts."""
    return read_meta(resolve_tagger_folder(model_dir)).context != "sentence"


def survey(source: Source) -> Survey:
    """The first pass: read every record (each JSON line parsed, each CoNLL line split and its tag checked)
    without holding them, and size the chunks; errors name file and line."""
    sizes: list[int] = []
    conll = files.ConllStream(source.path, source.shown) if source.input_format == "conll" else None
    for _, items in iter_chunks(source, conll):
        sizes.append(len(items))
    if conll is None:
        return Survey(source, sizes)
    if not sizes:
        raise DataFormatError("no sentences found (only blank or -DOCSTART- lines)", source.shown)
    return Survey(replace(source, sep=conll.sep, has_docstart=conll.has_docstart), sizes)


def iter_items(source: Source, conll: files.ConllStream | None = None) -> Iterator[Item]:
    """The records (text, JSONL) or sentences (CoNLL) of the input, one at a time."""
    if source.input_format == "conll":
        return iter(conll if conll is not None else files.ConllStream(source.path, source.shown))
    if source.input_format == "jsonl":
        return files.iter_jsonl_records(source.path, source.shown)
    return files.iter_text_records(source.path, source.shown)


def iter_chunks(source: Source, conll: files.ConllStream | None = None) -> Iterator[tuple[int, list[Item]]]:
    """``(index of the first item, items)`` of each chunk, fixed by position in the file (module docstring)."""
    chunk: list[Item] = []
    first = 0
    for item in iter_items(source, conll):
        if chunk and _chunk_closes(chunk, item, source):
            yield first, chunk
            first, chunk = first + len(chunk), []
        chunk.append(item)
    if chunk:
        yield first, chunk


def _chunk_closes(chunk: list[Item], item: Item, source: Source) -> bool:
    """Whether ``item`` starts a new chunk: at ``chunk`` items, or for document context at the next document."""
    if len(chunk) < source.chunk:
        return False
    if not source.by_document or len(chunk) >= source.chunk * MAX_CHUNKS_PER_DOCUMENT:
        return True
    return _doc_id(item) != _doc_id(chunk[-1])


def _doc_id(item: Item) -> int:
    return item.doc_id if isinstance(item, Sentence) else 0


def _has_output(item: Item, output_format: str) -> bool:
    """Whether the item writes a unit: always in JSONL; in CoNLL only when it has words."""
    if output_format == "jsonl" or isinstance(item, Sentence):
        return True
    return bool(item.words) if item.words is not None else bool(split_words(item.text or ""))


def _docstart(item: Item, sep: str) -> str:
    """The ``-DOCSTART-`` block written before a CoNLL document's first sentence, padded to the column count."""
    assert isinstance(item, Sentence)
    n_extra = len(item.extra[0]) if item.extra else 0
    return sep.join(["-DOCSTART-", *["-X-"] * n_extra, "O"]) + "\n\n"


@dataclass
class _Writer:
    """Writes the units of a range of records, skipping the ``skip`` units a resumed output already holds."""

    source: Source
    stream: TextIO
    skip: int = 0
    written: int = 0
    last_doc: int | None = None

    def pass_over(self, items: list[Item]) -> None:
        """Items whose units are already written (or belong to an earlier shard): no tagging, only their place."""
        for item in items:
            if _has_output(item, self.source.output_format):
                self.last_doc = _doc_id(item)

    def write(self, items: list[Item], outputs: list[str | None]) -> None:
        """The units of one tagged chunk, written whole and flushed (a kill leaves at most one partial line)."""
        docstart = self.source.output_format == "conll" and self.source.has_docstart
        parts = []
        for item, text in zip(items, outputs, strict=True):
            if text is None:
                continue
            prefix = _docstart(item, self.source.sep) if docstart and _doc_id(item) != self.last_doc else ""
            self.last_doc = _doc_id(item)
            if self.skip:
                self.skip -= 1
                continue
            parts.append(prefix + text)
        self.stream.write("".join(parts))
        self.stream.flush()
        self.written += len(parts)


def tag_range(tagger, source: Source, stream: TextIO, start: int, stop: int, skip: int = 0, bar=None) -> int:
    """Tag the records ``[start, stop)`` (``start`` a chunk boundary) into ``stream``, after the ``skip`` units
    already written there; return the units written now."""
    writer = _Writer(source, stream, skip=skip)
    for first, items in iter_chunks(source):
        if first >= stop:
            break
        if first < start:
            writer.pass_over(items)
            continue
        units = sum(_has_output(item, source.output_format) for item in items)
        if writer.skip >= units:
            writer.skip -= units
            writer.pass_over(items)
        else:
            writer.write(items, files.rendered_outputs(tagger, items, source.output_format, source.sep))
        if bar is not None:
            bar.update(len(items))
    return writer.written


# --- the output: .partial, its state, resume ----------------------------------------------------------
def partial_path(target: Path) -> Path:
    """Where the output is written until it is complete."""
    return target.with_name(f".{target.name}.partial")


def state_path(target: Path) -> Path:
    """The record of what the partial output is (input, formats, chunk, shards), checked by ``--resume``."""
    return target.with_name(f".{target.name}.partial.json")


def shards_path(target: Path) -> Path:
    """The folder of the workers' shard outputs."""
    return target.with_name(f".{target.name}.partial.shards")


def job_settings(model_dir: str, options) -> dict[str, Any]:
    """The tagger folder (path and when its ``lsfa.json`` was written) and the run options of a job: a resume with
    another tagger, a retrained one in the same folder, or other options (precision, decoding, threshold, ...)
    would write different entities after the same records, so they go into the state and must match."""
    folder = resolve_tagger_folder(model_dir).resolve()
    return {
        "tagger": str(folder),
        "tagger_saved_ns": (folder / META_FILE).stat().st_mtime_ns,
        "options": options.model_dump(mode="json", exclude={"progress"}),
    }


def run_state(survey_: Survey, shards: list[tuple[int, int]], settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one for the outputs to fit together (``settings``: the
    tagger and options, :func:`job_settings`)."""
    source = survey_.source
    stat = Path(source.path).stat()
    return (settings or {}) | {
        "input": str(Path(source.path).resolve()),
        "input_bytes": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "input_format": source.input_format,
        "output_format": source.output_format,
        "chunk": source.chunk,
        "by_document": source.by_document,
        "records": survey_.n_records,
        "shards": [list(shard) for shard in shards],
    }


def begin_output(target: Path, state: dict[str, Any], resume: bool) -> bool:
    """Check an interrupted output against this run and record the state; return whether to resume it.

    Without ``--resume`` an interrupted output is refused (hours of tagging are not thrown away by an accident);
    with it, a state that differs from this run's (another input, chunk size, format or worker count) is."""
    found = [path for path in (partial_path(target), shards_path(target), state_path(target)) if path.exists()]
    if found and not resume:
        raise LsfaError(
            f"{found[0]}: an interrupted lsfa predict output is there; add --resume to continue it, "
            "or delete it to start over"
        )
    if resume and state_path(target).exists():
        _check_state(target, state)
        return True
    if resume:
        print(f"--resume: no interrupted output of {target}; starting from the first record", file=sys.stderr)
    try:
        state_path(target).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    except OSError as error:
        raise LsfaError(f"{target}: cannot write the output: {error.strerror}") from None
    return False


def _check_state(target: Path, state: dict[str, Any]) -> None:
    try:
        recorded = json.loads(state_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise LsfaError(f"{state_path(target)}: unreadable; delete it and the partial output to start over") from None
    for key, value in state.items():
        if recorded.get(key) == value:
            continue
        if key == "shards":
            was = len(recorded.get(key) or [])
            raise LsfaError(f"--resume: the interrupted output of {target} was made by {was} worker(s): resume "
                            f"with --workers {was}, or delete its .partial files to start over")  # fmt: skip
        if key == "tagger_saved_ns":
            raise LsfaError(f"--resume: the tagger {state['tagger']} was saved again after the interrupted output of "
                            f"{target} was started; delete its .partial files to start over")  # fmt: skip
        name, was, now = _difference(key, recorded.get(key), value)
        raise LsfaError(
            f"--resume: the interrupted output of {target} was made with {name} {was!r}, this run has "
            f"{now!r}; delete its .partial files to start over"
        )


def _difference(key: str, was: Any, now: Any) -> tuple[str, Any, Any]:
    """``(name, was, now)`` of the first difference, an option named as its flag (``--precision``) rather than
    the whole options dict."""
    if key != "options" or not isinstance(was, dict):
        return key, was, now
    name = next(name for name in now if was.get(name) != now[name])
    return flag_of(name), was.get(name), now[name]


def finish_output(target: Path) -> None:
    """The output is complete: the state file goes."""
    state_path(target).unlink(missing_ok=True)


@contextlib.contextmanager
def resumable_stream(partial: Path, output_format: str, resume: bool) -> Iterator[tuple[TextIO, int]]:
    """``(stream, units already there)`` for a partial output: cut to its last complete unit when resumed,
    else empty. It is kept when the block fails (``--resume`` continues it), unless nothing was written."""
    done = complete_units(partial, output_format, truncate=True) if resume and partial.exists() else 0
    try:
        stream = open(partial, "a" if done else "w", encoding="utf-8", newline="\n")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise LsfaError(f"{partial}: cannot write the output: {error.strerror}") from None
    try:
        with stream:
            yield stream, done
    except BaseException:
        if partial.exists() and partial.stat().st_size == 0:
            partial.unlink()
        raise


def complete_units(path: Path, output_format: str, truncate: bool = False) -> int:
    """How many whole units (JSON lines, or CoNLL sentences with their blank line) a partial output holds; with
    ``truncate`` whatever follows the last one (a line cut by a kill) is cut off, to be written again."""
    count, end = (_json_lines if output_format == "jsonl" else _conll_sentences)(path)
    if truncate and end < path.stat().st_size:
        with path.open("r+b") as stream:
            stream.truncate(end)
    return count


def _json_lines(path: Path) -> tuple[int, int]:
    """``(complete lines, byte offset after the last)``; a last line that is not valid JSON counts as cut."""
    count, end, last_start = 0, 0, 0
    with path.open("rb") as stream:
        for line in stream:
            if not line.endswith(b"\n"):
                break
            count, last_start, end = count + 1, end, end + len(line)
    if count and not _is_json(path, last_start, end):
        return count - 1, last_start
    return count, end


def _is_json(path: Path, start: int, end: int) -> bool:
    with path.open("rb") as stream:
        stream.seek(start)
        try:
            json.loads(stream.read(end - start))
        except ValueError:
            return False
    return True


def _conll_sentences(path: Path) -> tuple[int, int]:
    """``(complete sentences, byte offset after the last one's blank line)``; ``-DOCSTART-`` blocks are not
    sentences, so a document start written before a cut-off sentence is written again with it."""
    count, end, offset = 0, 0, 0
    block_is_sentence = None  # None between blocks; else whether the open block is a sentence
    with path.open("rb") as stream:
        for line in stream:
            offset += len(line)
            if not line.endswith(b"\n"):
                break
            if line.strip():
                if block_is_sentence is None:
                    block_is_sentence = not line.lstrip().startswith(b"-DOCSTART-")
                continue
            if block_is_sentence:
                count, end = count + 1, offset
            block_is_sentence = None
    return count, end


# --- one process ---------------------------------------------------------------------------------------
def predict_file(
    tagger,
    survey_: Survey,
    output: str | None,
    resume: bool = False,
    progress: bool = True,
    settings: dict[str, Any] | None = None,
) -> int:
    """Tag the surveyed input into ``output`` (stdout when ``None``) in one process; return the units in it.
    ``settings`` (:func:`job_settings`) go into the resume state."""
    source = survey_.source
    with _progress_bar(survey_.n_records, progress) as bar:
        if output is None:
            if resume:
                raise LsfaError("--resume needs --output: an output on stdout cannot be continued")
            return tag_range(tagger, source, sys.stdout, 0, survey_.n_records, bar=bar)
        target = Path(output)
        resume = begin_output(target, run_state(survey_, [(0, survey_.n_records)], settings), resume)
        with resumable_stream(partial_path(target), source.output_format, resume) as (stream, done):
            written = tag_range(tagger, source, stream, 0, survey_.n_records, skip=done, bar=bar)
        os.replace(partial_path(target), target)
        finish_output(target)
    return done + written


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool):
    """A bar with documents/s and an ETA when stderr is a terminal (``disable=None``), else nothing."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="predict", unit="doc", file=sys.stderr, disable=None, smoothing=0.1) as bar:
        yield bar


# --- N workers -----------------------------------------------------------------------------------------
def shard_ranges(chunk_sizes: list[int], workers: int) -> list[tuple[int, int]]:
    """``workers`` contiguous record ranges cut at chunk boundaries, about equal in records (fewer when there are
    fewer chunks than workers)."""
    bounds, total, position = [0], sum(chunk_sizes), 0
    for size in chunk_sizes[:-1]:
        position += size
        if position * workers >= total * len(bounds) and len(bounds) < workers:
            bounds.append(position)
    bounds.append(total)
    return [(start, stop) for start, stop in itertools.pairwise(bounds) if stop > start]


@dataclass(frozen=True)
class _Shard:
    """One worker's job: records ``[start, stop)`` into ``path`` (through its ``.partial``)."""

    index: int
    start: int
    stop: int
    path: str

    @property
    def partial(self) -> Path:
        return partial_path(Path(self.path))

    @property
    def error(self) -> Path:
        return Path(self.path).with_suffix(".error")


def predict_with_workers(
    model_dir: str,
    options,
    threads: int,
    survey_: Survey,
    workers: int,
    output: str | None,
    resume: bool = False,
    progress: bool = True,
) -> int:
    """Tag the surveyed input with ``workers`` processes of ``threads`` threads each and merge their shards into
    ``output`` in input order; return the units in it."""
    shards = shard_ranges(survey_.chunk_sizes, workers)
    state = run_state(survey_, shards, job_settings(model_dir, options))
    with _shard_folder(output, state, resume) as (folder, resume):
        jobs = [_Shard(i, start, stop, str(folder / f"shard-{i:05d}.out")) for i, (start, stop) in enumerate(shards)]
        _run_workers(model_dir, options, threads, survey_, jobs, resume, progress)
        return _merge(jobs, output, survey_.source.output_format)


@contextlib.contextmanager
def _shard_folder(output: str | None, state: dict[str, Any], resume: bool):
    """The folder of the shard outputs: beside the output (kept for ``--resume`` if a run fails), or a temporary
    one for stdout."""
    if output is None:
        if resume:
            raise LsfaError("--resume needs --output: an output on stdout cannot be continued")
        with tempfile.TemporaryDirectory(prefix="lsfa-shards-") as folder:
            yield Path(folder), False
        return
    target = Path(output)
    resume = begin_output(target, state, resume)
    shards_path(target).mkdir(exist_ok=True)
    yield shards_path(target), resume
    shutil.rmtree(shards_path(target))
    finish_output(target)


def _run_workers(model_dir, options, threads, survey_: Survey, jobs: list[_Shard], resume: bool, progress: bool):
    """Start one spawned process per unfinished shard, show their joint progress, and raise the first error."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no forked torch threads, the same start on every OS
    counter = context.Value("q", 0)
    todo = [job for job in jobs if not Path(job.path).exists()]
    processes = []
    for job in todo:
        args = (model_dir, options, threads, survey_.source, job, resume, counter)
        processes.append(context.Process(target=_worker_main, args=args, name=f"lsfa-predict-{job.index}"))
    done_before = sum(job.stop - job.start for job in jobs if job not in todo)
    try:
        for process in processes:
            process.start()
        with _progress_bar(survey_.n_records, progress) as bar:
            _wait(processes, counter, bar, done_before)
    finally:
        for process in processes:  # only on an interruption or an error: the others are joined by now
            if process.is_alive():
                process.terminate()
            process.join()
    _raise_worker_errors(todo, processes)


def _wait(processes, counter, bar, done_before: int) -> None:
    """Until every worker has exited, move the bar to the records they have tagged."""
    shown = 0
    while any(process.is_alive() for process in processes):
        time.sleep(0.2)
        if bar is not None and counter.value + done_before > shown:
            bar.update(counter.value + done_before - shown)
            shown = counter.value + done_before


def _raise_worker_errors(jobs: list[_Shard], processes) -> None:
    for job, process in zip(jobs, processes, strict=True):
        if job.error.exists():
            message = job.error.read_text(encoding="utf-8")
            job.error.unlink()
            raise LsfaError(message)
        if process.exitcode != 0:
            raise LsfaError(
                f"worker {job.index} (records {job.start + 1:,}-{job.stop:,}) stopped with exit code "
                f"{process.exitcode}; its shard is kept: run again with --resume to continue"
            )


def _worker_main(model_dir: str, options, threads: int, source: Source, job: _Shard, resume: bool, counter) -> None:
    """One worker process: load the tagger, tag the shard into its partial file, rename it when complete. A user
    error is written beside the shard for the parent to report as one line."""
    try:
        import torch

        torch.set_num_threads(threads)
        tagger = Tagger.load(model_dir, options)
        with resumable_stream(job.partial, source.output_format, resume) as (stream, done):
            tag_range(tagger, source, stream, job.start, job.stop, skip=done, bar=_Counter(counter))
        os.replace(job.partial, job.path)
    except LsfaError as error:
        job.error.write_text(str(error), encoding="utf-8")
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C reaches every worker; the parent says what to do
        sys.exit(130)


@dataclass
class _Counter:
    """A progress bar's ``update`` that adds to a counter shared with the parent process."""

    value: Any

    def update(self, n: int) -> None:
        with self.value.get_lock():
            self.value.value += n


def _merge(jobs: list[_Shard], output: str | None, output_format: str) -> int:
    """Concatenate the shard outputs in order into the output (atomically renamed); return its units."""
    units = sum(complete_units(Path(job.path), output_format) for job in jobs)
    with files.output_stream(output) as stream:
        for job in jobs:
            with open(job.path, encoding="utf-8", newline="") as shard:
                shutil.copyfileobj(shard, stream, _COPY_BYTES)
    return units
