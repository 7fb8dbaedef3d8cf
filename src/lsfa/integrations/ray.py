"""lsfa on a Ray cluster: tag a corpus too large for one machine with Ray Data (``pip install 'lsfa[ray]'``).

Two entry points:

* :class:`RayTagger`, a callable class for ``ray.data.Dataset.map_batches`` in a user's own pipeline: each actor
  loads the tagger once, each call tags a batch with a ``text`` column (or pre-split ``words``) and adds an
  ``entities`` column (and ``text``/``tags`` for words), the other columns passed through.
* :func:`predict_with_ray` (``lsfa predict --ray``): a JSONL or Parquet file in, one JSONL file per shard out,
  byte for byte what one ``lsfa predict`` process writes once the sorted shards are concatenated.

Why shards of our own rather than Ray's readers and writers: output must equal one process's to the byte, and
``id`` defaults to the input line, which Ray's readers do not know; the input is therefore cut here into
contiguous shards of whole records (a multiple of ``lsfa predict --chunk``, so each predictor call sees the same
documents as in one process). Ray Data schedules the shards (one row each) onto an actor pool
(``ActorPoolStrategy``, ``num_cpus``/``num_gpus`` per actor); each actor reads its shard with the same record
reader as ``lsfa predict`` (:func:`lsfa.inference.files.parse_json_record`) and writes it through a temporary
file renamed into place, so a finished shard is complete or absent, and a re-run skips the finished ones.
The input and the output folder must be paths every node sees (a shared file system), as for Ray's own readers.

Ray is imported only inside these functions: ``import lsfa`` and ``lsfa --help`` never load it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lsfa.errors import DataFormatError, LsfaError, writing
from lsfa.inference import files
from lsfa.inference.options import InferenceOptions
from lsfa.inference.tagger import Tagger

INSTALL_HINT = "Ray Data is not installed: pip install 'lsfa[ray]'"
INPUT_FORMATS = {".jsonl": "jsonl", ".parquet": "parquet"}
"""Input suffixes ``predict_with_ray`` reads, and the format each names."""
MANIFEST = "manifest.json"
"""The shard plan in the output folder: which input, settings and shard boundaries the shards belong to."""
SHARD_PREFIX = "shard-"
DEFAULT_SHARD_RECORDS = 1024
DEFAULT_CHUNK = 256
"""Documents per predictor call, as ``lsfa predict --chunk`` (its default): the predictor sorts a call's documents
by length into batches, and the composition of a batch can change a score's last bits."""


def require_ray():
    """The ``ray`` module with Ray Data, or one line saying how to install it."""
    try:
        import ray
        import ray.data  # the extra's part we need; plain `ray` lacks pyarrow and pandas
    except ImportError:
        raise LsfaError(INSTALL_HINT) from None
    return ray


def _load_tagger(model_dir: str | Path, options: InferenceOptions | Mapping[str, Any] | None, threads: int | None):
    """A tagger as ``lsfa predict`` loads it, with ``threads`` torch threads (one per reserved CPU is best)."""
    if threads is not None:
        torch.set_num_threads(threads)
    if isinstance(options, Mapping):
        options = InferenceOptions.of(None, **options)
    return Tagger.load(model_dir, options)


# --- the map_batches callable --------------------------------------------------------------------------
class RayTagger:
    """``ds.map_batches(RayTagger, fn_constructor_kwargs={"model_dir": ...}, batch_size=64,
    compute=ray.data.ActorPoolStrategy(size=4), num_cpus=1)``: tag a batch of documents.

    A batch (Ray's ``numpy`` or ``pandas`` format) has a ``text`` column (raw text, split into words as by
    ``lsfa predict``) or a ``words`` column (lists of strings); the result keeps every input column and adds
    ``entities`` (a list of ``{"start", "end", "label", "text", "score"}`` dicts per row; a JSON string per row
    with ``entities_as="json"``, which suits writers that want one flat type), and for ``words`` also ``text``
    (the words joined by single spaces, which the offsets point into) and ``tags``. The entities are those
    ``lsfa predict`` finds for the same document and options.
    """

    def __init__(
        self,
        model_dir: str | Path,
        options: InferenceOptions | Mapping[str, Any] | None = None,
        threads: int | None = 1,
        entities_as: str = "list",
    ) -> None:
        if entities_as not in ("list", "json"):
            raise LsfaError(f"entities_as: {entities_as!r} is neither 'list' nor 'json'")
        self.entities_as = entities_as
        self.tagger = _load_tagger(model_dir, options, threads)

    def __call__(self, batch: Any) -> dict[str, Any]:
        columns = _batch_columns(batch)
        records = [_batch_record(columns, row) for row in range(_row_count(columns))]
        outputs = list(files.predict_records(self.tagger, records, batch_size=self.tagger.batch_size))
        result = dict(columns)
        entities = [output["entities"] for output in outputs]
        result["entities"] = [files.json_line(found) for found in entities] if self.entities_as == "json" else entities
        if "words" in columns:
            result["text"] = [output["text"] for output in outputs]
            result["tags"] = [output["tags"] for output in outputs]
        return result


def _batch_columns(batch: Any) -> dict[str, Any]:
    """A batch as ``{column: values}``: a pandas DataFrame's columns or a dict of arrays as given."""
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):  # pandas.DataFrame
        return {str(name): batch[name].to_numpy() for name in batch.columns}
    if isinstance(batch, Mapping):
        return dict(batch)
    raise LsfaError(f"RayTagger takes a batch as a dict of columns or a DataFrame, got {type(batch).__name__}")


def _row_count(columns: Mapping[str, Any]) -> int:
    if "text" not in columns and "words" not in columns:
        raise LsfaError(f"RayTagger needs a 'text' or a 'words' column; the batch has {sorted(columns)}")
    return len(columns["text" if "text" in columns else "words"])


def _batch_record(columns: Mapping[str, Any], row: int) -> files.Record:
    """Row ``row`` of a batch as a record; a value of the wrong type is one error naming the row and column."""
    if "text" in columns:
        text = columns["text"][row]
        if not isinstance(text, str):
            raise LsfaError(f"batch row {row}: 'text' must be a string, got {type(text).__name__}")
        return files.Record(line=row + 1, text=str(text), source={"text": str(text)})
    words = columns["words"][row]
    if isinstance(words, str) or not all(isinstance(word, str) for word in words):
        raise LsfaError(f"batch row {row}: 'words' must be a list of strings")
    words = [str(word) for word in words]
    return files.Record(line=row + 1, words=words, source={"words": words})


# --- the shard plan ------------------------------------------------------------------------------------
@dataclass
class ShardPlan:
    """How an input is cut: ``shards`` are ``[start, end, first_line]`` (byte offsets and the line number there
    for JSONL; row numbers for Parquet), each holding ``shard_records`` records (the last one fewer)."""

    input: str
    format: str
    size: int
    mtime_ns: int
    shard_records: int
    records: int
    settings: dict[str, Any]
    shards: list[list[int]]

    def shard_path(self, output_dir: Path, index: int) -> Path:
        """Shard ``index``'s output file; zero-padded so that sorted names are input order."""
        width = max(5, len(str(len(self.shards) - 1)))
        return output_dir / f"{SHARD_PREFIX}{index:0{width}d}.jsonl"

    def same_job(self, other: ShardPlan) -> bool:
        """Whether ``other`` plans the same input, unchanged, with the same settings (so its shards can be kept)."""
        keys = ("input", "format", "size", "mtime_ns", "shard_records", "settings")
        return all(getattr(self, key) == getattr(other, key) for key in keys)


def input_format(path: str | Path) -> str:
    """``jsonl`` or ``parquet`` from the suffix, else an error naming the file."""
    found = INPUT_FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise LsfaError(f"{path}: --ray reads JSONL (.jsonl) or Parquet (.parquet) input")
    return found


def plan_shards(path: str | Path, shard_records: int, settings: Mapping[str, Any]) -> ShardPlan:
    """Cut the input into contiguous shards of ``shard_records`` records. A JSONL file is read once here and
    every record checked as ``lsfa predict`` checks it, so a bad line fails before the cluster works for hours."""
    path = Path(path)
    if not path.is_file():
        raise LsfaError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    fmt = input_format(path)
    stat = path.stat()
    if fmt == "jsonl":
        shards, records = _jsonl_shards(path, shard_records, stat.st_size)
    else:
        shards, records = _parquet_shards(path, shard_records)
    return ShardPlan(
        str(path.resolve()), fmt, stat.st_size, stat.st_mtime_ns, shard_records, records, dict(settings), shards
    )


def _decode(raw: bytes, path: Path, number: int, at_start: bool) -> str:
    """One line as :func:`lsfa.inference.files.read_lines` reads it: UTF-8, a BOM at the file's start dropped, one
    trailing ``\\r`` dropped; invalid UTF-8 is an error naming the file and line."""
    try:
        line = raw.decode("utf-8-sig" if at_start else "utf-8")
    except UnicodeDecodeError:
        raise DataFormatError("not valid UTF-8 text", path, number) from None
    return line[:-1] if line.endswith("\r") else line


def _jsonl_lines(data: bytes, path: Path, first_line: int, at_start: bool) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of ``data`` (split at ``\\n`` only, as ``lsfa predict`` splits)."""
    for number, raw in enumerate(data.split(b"\n"), start=first_line):
        yield number, _decode(raw, path, number, at_start and number == first_line)


def _jsonl_shards(path: Path, shard_records: int, size: int) -> tuple[list[list[int]], int]:
    starts: list[tuple[int, int]] = []
    offset, records = 0, 0
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, start=1):
            line = _decode(raw.removesuffix(b"\n"), path, number, at_start=number == 1)
            if line.strip():
                files.parse_json_record(line, path, number)
                if records % shard_records == 0:
                    starts.append((offset, number))
                records += 1
            offset += len(raw)
    ends = [start for start, _ in starts[1:]] + [size]
    return [[start, end, line] for (start, line), end in zip(starts, ends, strict=True)], records


def _parquet_shards(path: Path, shard_records: int) -> tuple[list[list[int]], int]:
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(path).metadata
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not Parquet
        raise DataFormatError(f"not a Parquet file ({error})", path) from None
    names = set(metadata.schema.names)
    if not names & {"text", "words"}:
        raise DataFormatError(f'expected a "text" or "words" column, found {sorted(names)}', path)
    rows = metadata.num_rows
    shards = [[start, min(start + shard_records, rows), start + 1] for start in range(0, rows, shard_records)]
    return shards, rows


def shard_records_of(plan: ShardPlan, index: int) -> list[files.Record]:
    """The records of shard ``index``, read and checked as ``lsfa predict`` reads its input (file:line errors;
    for Parquet the line is the row number, and a row is the JSON object of its non-null columns' values)."""
    start, end, first_line = plan.shards[index]
    path = Path(plan.input)
    if plan.format == "parquet":
        return [
            _parquet_record(row, path, first_line + offset)
            for offset, row in enumerate(_parquet_rows(path, start, end))
        ]
    with open(path, "rb") as stream:
        stream.seek(start)
        data = stream.read(end - start)
    if data.endswith(b"\n"):
        data = data[:-1]
    lines = _jsonl_lines(data, path, first_line, at_start=start == 0)
    return [files.parse_json_record(line, path, number) for number, line in lines if line.strip()]


def _parquet_rows(path: Path, start: int, end: int) -> list[dict[str, Any]]:
    """Rows ``start:end`` of a Parquet file, reading only the row groups that hold them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    tables, first = [], 0
    for group in range(source.num_row_groups):
        rows = source.metadata.row_group(group).num_rows
        if first < end and first + rows > start:
            tables.append((first, source.read_row_group(group)))
        first += rows
    if not tables:
        return []
    offset = tables[0][0]
    table = pa.concat_tables([table for _, table in tables])
    return table.slice(start - offset, end - start).to_pylist()


def _parquet_record(row: dict[str, Any], path: Path, number: int) -> files.Record:
    """A Parquet row through the JSONL record reader, so both inputs are checked and echoed alike."""
    value = {key: item for key, item in row.items() if not (key in ("text", "words") and item is None)}
    try:
        line = files.json_line(value)
    except (TypeError, ValueError) as error:
        raise DataFormatError(f"a value has no JSON form ({error})", path, number) from None
    return files.parse_json_record(line, path, number)


def read_manifest(output_dir: Path) -> ShardPlan | None:
    """The plan a previous run left in ``output_dir``, if any."""
    manifest = output_dir / MANIFEST
    if not manifest.is_file():
        return None
    try:
        return ShardPlan(**json.loads(manifest.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as error:
        raise LsfaError(f"{manifest}: not a shard plan of lsfa predict --ray ({error})") from None


def write_manifest(plan: ShardPlan, output_dir: Path) -> None:
    """Write the plan atomically (a re-run must never read half of it)."""
    manifest = output_dir / MANIFEST
    with writing(manifest), files.output_stream(manifest) as stream:
        stream.write(json.dumps(asdict(plan)) + "\n")


# --- the shard actor -----------------------------------------------------------------------------------
class ShardWorker:
    """The actor of :func:`predict_with_ray`: loads the tagger once, then tags and writes whole shards (a batch
    is rows of a ``shard`` column), returning each shard's record count, seconds and user error (or "")."""

    def __init__(self, model_dir: str, options: dict[str, Any], threads: int | None, plan: dict, output_dir: str):
        self.tagger = _load_tagger(model_dir, options, threads)
        self.plan = ShardPlan(**plan)
        self.output_dir = Path(output_dir)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list]:
        done: dict[str, list] = {"shard": [], "records": [], "seconds": [], "error": []}
        for index in batch["shard"]:
            started = time.perf_counter()
            try:
                records, error = self.write_shard(int(index)), ""
            except LsfaError as problem:  # returned, not raised: Ray's wrapping would bury the one line
                records, error = 0, str(problem)
            done["records"].append(records)
            done["shard"].append(int(index))
            done["seconds"].append(time.perf_counter() - started)
            done["error"].append(error)
        return done

    def write_shard(self, index: int) -> int:
        """Tag shard ``index`` and write it through a temporary file renamed into place; the record count."""
        records = shard_records_of(self.plan, index)
        objects = files.predict_records(self.tagger, records, batch_size=self.plan.settings["chunk"])
        target = self.plan.shard_path(self.output_dir, index)
        with writing(target), files.output_stream(target) as stream:
            return files.write_jsonl(objects, stream)


# --- the job -------------------------------------------------------------------------------------------
def predict_with_ray(
    model_dir: str | Path,
    input_path: str | Path,
    output_dir: str | Path,
    *,
    options: InferenceOptions | None = None,
    address: str | None = None,
    num_actors: int = 2,
    threads_per_actor: int = 1,
    gpus_per_actor: float = 0,
    shard_records: int = DEFAULT_SHARD_RECORDS,
    chunk: int = DEFAULT_CHUNK,
    resume: bool = True,
) -> dict[str, Any]:
    """Tag a JSONL or Parquet file on a Ray cluster into ``output_dir/shard-NNNNN.jsonl``; a summary dict.

    ``address``: ``None`` or ``"local"`` starts a local cluster (unless this process already joined one),
    ``"auto"`` joins the cluster ``ray start`` runs here, ``"ray://host:10001"`` a remote one. ``num_actors``
    taggers run at once, each with ``threads_per_actor`` CPUs (and torch threads) and ``gpus_per_actor`` GPUs.
    ``chunk`` documents are tagged per predictor call, as by ``lsfa predict --chunk`` (the same value gives the
    same bytes); ``shard_records`` is rounded up to a multiple of it. With ``resume``, shards already written
    for the same input and settings are kept; otherwise the folder's shards are redone.
    """
    options = options or InferenceOptions()
    if min(num_actors, threads_per_actor, shard_records, chunk) < 1 or gpus_per_actor < 0:
        raise LsfaError(
            "num_actors, threads_per_actor, shard_records and chunk must be at least 1, gpus_per_actor >= 0"
        )
    ray = require_ray()
    output = Path(output_dir)
    plan = _plan(model_dir, input_path, output, options, shard_records, chunk, resume)
    pending = [index for index in range(len(plan.shards)) if not plan.shard_path(output, index).is_file()]
    started, joined = time.perf_counter(), _connect(ray, address)
    try:
        results = _run_shards(
            ray, plan, pending, output, model_dir, options, num_actors, threads_per_actor, gpus_per_actor
        )
    finally:
        if joined:
            ray.shutdown()
    seconds = time.perf_counter() - started
    tagged = sum(row["records"] for row in results)
    return {
        "output_dir": str(output),
        "shards": len(plan.shards),
        "tagged_shards": len(results),
        "skipped_shards": len(plan.shards) - len(pending),
        "records": plan.records,
        "tagged_records": tagged,
        "seconds": round(seconds, 3),
        "documents_per_second": round(tagged / seconds, 2) if tagged else 0.0,
    }


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _plan(
    model_dir, input_path, output: Path, options: InferenceOptions, records: int, chunk: int, resume: bool
) -> ShardPlan:
    """This job's shard plan: the previous run's when it is the same job (resume), else a new one; a folder
    holding another job's shards is refused rather than mixed."""
    settings = {"model_dir": str(Path(model_dir).resolve()), "options": options.model_dump(mode="json")}
    settings["chunk"] = chunk
    plan = plan_shards(input_path, _round_up(records, chunk), settings)
    previous = read_manifest(output) if output.is_dir() else None
    if previous is not None and resume and not previous.same_job(plan):
        raise LsfaError(
            f"{output}: holds shards of another input or other settings ({previous.input}); "
            "choose another folder, or empty this one (predict_with_ray: resume=False) to redo it"
        )
    if output.exists() and not output.is_dir():
        raise LsfaError(f"{output}: --output must be a folder for --ray")
    with writing(output):
        output.mkdir(parents=True, exist_ok=True)
    if not resume:
        for old in output.glob(f"{SHARD_PREFIX}*.jsonl"):
            old.unlink()
    write_manifest(plan, output)
    return plan


def _connect(ray, address: str | None) -> bool:
    """Join or start a cluster unless this process already has one; whether we did (and so shut it down)."""
    if ray.is_initialized():
        return False
    try:
        if address in (None, "local"):
            ray.init(include_dashboard=False)
        else:
            ray.init(address=address)
    except ConnectionError as error:
        raise LsfaError(f"--ray {address}: cannot reach a Ray cluster ({error})") from None
    return True


def _run_shards(ray, plan, pending, output, model_dir, options, num_actors, threads, gpus) -> list[dict[str, Any]]:
    """Tag the pending shards on an actor pool, one shard per block so that idle actors take the next one."""
    if not pending:
        return []
    items = [{"shard": index} for index in pending]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    constructor = {
        "model_dir": str(model_dir),
        "options": options.model_dump(exclude_unset=True),
        "threads": threads,
        "plan": asdict(plan),
        "output_dir": str(output),
    }
    tagged = dataset.map_batches(
        ShardWorker,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(num_actors, len(pending))),
        fn_constructor_kwargs=constructor,
        num_cpus=threads,
        num_gpus=gpus or None,
    )
    results = tagged.take_all()
    failed = [row["error"] for row in results if row["error"]]
    if failed:  # the first user error, as the one line lsfa predict prints (the other shards are kept)
        raise LsfaError(failed[0])
    return results
