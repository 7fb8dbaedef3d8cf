"""``lsfa predict --ray`` and :class:`lsfa.integrations.ray.RayTagger` on a local Ray cluster of two CPUs.

The cluster is started once for the module (Ray's start-up costs seconds); every job runs two actors. The one
check that matters: the sorted shards, concatenated, are byte for byte what one ``lsfa predict`` process writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsfa.errors import DataFormatError, LsfaError
from lsfa.inference.options import InferenceOptions
from lsfa.integrations.ray import plan_shards

ray = pytest.importorskip("ray", reason="Ray Data is not installed (pip install -e '.[ray]'; make setup does)")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install -e '.[ray]'; make setup does)")

from lsfa.integrations.ray import RayTagger, predict_with_ray  # noqa: E402 (after the skip: needs ray)

OPTIONS = ["--precision", "fp32", "--batch-size", "4", "--chunk", "4"]
WORDS = ["Bob", "Carter", "the", "dog", "Berlin", "sat", "in", "Cole", "mat", "Bill", "a", "cat", "said"]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of two CPUs for the whole module, shut down at its end."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def documents(count: int = 30) -> list[dict]:
    """JSONL objects of every kind ``lsfa predict`` reads: text or words, with or without an id, extra keys."""
    rows = []
    for number in range(count):
        words = [WORDS[(number * 7 + k * 3) % len(WORDS)] for k in range(3 + number % 9)]
        row: dict = (
            {"words": words} if number % 3 == 0 else {"text": " ".join(words) + ("\u2028é." if number % 5 else "")}
        )
        if number % 2:
            row["id"] = f"doc-{number}"
            row["meta"] = {"n": number, "x": 0.5}
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Rows one per line, with a blank line and a CRLF line among them (both read as ``lsfa predict`` reads them)."""
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    lines.insert(5, "")
    lines[8] += "\r"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def one_process(run, model_dir: str, source: Path, tmp_path: Path) -> bytes:
    target = tmp_path / "one-process.jsonl"
    code, _, err = run(["predict", "--model-dir", model_dir, "-i", str(source), "-o", str(target), *OPTIONS])
    assert code == 0, err
    return target.read_bytes()


def shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("shard-*.jsonl"))


def joined(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in shards(folder))


@pytest.fixture
def model_dir(tiny_taggers) -> str:
    """The untrained tiny tagger: arbitrary but deterministic entities and scores, so any change in batching or
    order shows in the bytes."""
    return str(tiny_taggers["random"])


def test_shards_equal_one_process_and_resume_redoes_only_a_missing_shard(cluster, run, model_dir, tmp_path):
    source = write_jsonl(tmp_path / "docs.jsonl", documents())
    expected = one_process(run, model_dir, source, tmp_path)
    output = tmp_path / "shards"
    options = InferenceOptions(precision="fp32", batch_size=4)
    summary = predict_with_ray(model_dir, source, output, options=options, num_actors=2, shard_records=6, chunk=4)
    assert summary["records"] == 30 and summary["shards"] == summary["tagged_shards"] == 4  # 6 -> 8 a shard:
    assert len(shards(output)) == 4 and joined(output) == expected  # a multiple of --chunk 4

    kept = {path.name: path.stat().st_mtime_ns for path in shards(output)}
    shards(output)[1].unlink()
    again = predict_with_ray(model_dir, source, output, options=options, num_actors=2, shard_records=6, chunk=4)
    assert again["tagged_shards"] == 1 and again["skipped_shards"] == 3
    changed = [path.name for path in shards(output) if path.stat().st_mtime_ns != kept[path.name]]
    assert changed == [sorted(kept)[1]] and joined(output) == expected


def test_parquet_input_gives_the_jsonl_output(cluster, run, model_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"id": f"p{n}", **{k: v for k, v in row.items() if k in ("text", "words")}}
        for n, row in enumerate(documents(12))
    ]
    source = write_jsonl(tmp_path / "docs.jsonl", rows)
    expected = one_process(run, model_dir, source, tmp_path)
    table = pa.Table.from_pylist(
        [{"id": row["id"], "text": row.get("text"), "words": row.get("words")} for row in rows]
    )
    parquet = tmp_path / "docs.parquet"
    pq.write_table(table, parquet, row_group_size=5)  # shards of 4 rows cross row groups
    output = tmp_path / "shards"
    code, _, err = run(
        ["predict", "--model-dir", model_dir, "-i", str(parquet), "-o", str(output), "--ray", "local", *OPTIONS]
    )
    assert code == 0, err
    assert "12 documents tagged in 1 shards" in err
    assert joined(output) == expected
    options = InferenceOptions(precision="fp32", batch_size=4)
    summary = predict_with_ray(model_dir, parquet, tmp_path / "small", options=options, shard_records=4, chunk=4)
    assert summary["shards"] == 3 and joined(tmp_path / "small") == expected


def test_ray_tagger_in_map_batches_finds_what_lsfa_predict_finds(cluster, run, model_dir, tmp_path):
    rows = [{"text": row["text"]} for row in documents(16) if "text" in row]
    source = write_jsonl(tmp_path / "texts.jsonl", rows)
    expected = [json.loads(line)["entities"] for line in one_process(run, model_dir, source, tmp_path).splitlines()]
    tagged = ray.data.from_items(rows).map_batches(
        RayTagger,
        fn_constructor_kwargs={
            "model_dir": model_dir,
            "options": {"precision": "fp32", "batch_size": 4},
            "entities_as": "json",
        },
        batch_size=4,
        compute=ray.data.ActorPoolStrategy(size=2),
        num_cpus=1,
    )
    found = {row["text"]: json.loads(row["entities"]) for row in tagged.take_all()}
    assert [found[row["text"]] for row in rows] == expected


def test_a_bad_parquet_row_is_one_line_naming_file_and_row(cluster, model_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "Bob sat"}, {"text": None}]), parquet)
    with pytest.raises(LsfaError, match=r"bad\.parquet:2: expected exactly one of"):
        predict_with_ray(model_dir, parquet, tmp_path / "out", options=InferenceOptions(precision="fp32"))


def test_a_bad_jsonl_line_fails_before_the_cluster_runs(tmp_path):
    source = tmp_path / "docs.jsonl"
    source.write_text('{"text": "fine"}\n\n{"text": 5}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r'docs\.jsonl:3: "text" must be a string'):
        plan_shards(source, 8, {})
    (tmp_path / "docs.txt").write_text("Bob sat\n", encoding="utf-8")
    with pytest.raises(LsfaError, match=r"docs\.txt: --ray reads JSONL \(\.jsonl\) or Parquet"):
        plan_shards(tmp_path / "docs.txt", 8, {})


def test_another_job_in_the_output_folder_is_refused(cluster, model_dir, tmp_path):
    source = write_jsonl(tmp_path / "docs.jsonl", documents(10))
    output = tmp_path / "shards"
    predict_with_ray(model_dir, source, output, options=InferenceOptions(precision="fp32"), num_actors=1)
    with pytest.raises(LsfaError, match="holds shards of another input or other settings"):
        predict_with_ray(model_dir, source, output, options=InferenceOptions(precision="fp32", threshold=0.5))


def test_cli_ray_needs_an_output_folder(run, model_dir, tmp_path):
    source = write_jsonl(tmp_path / "docs.jsonl", documents(10))
    code, _, err = run(["predict", "--model-dir", model_dir, "-i", str(source), "--ray", "local"])
    assert code == 2 and "--ray needs --input FILE (JSONL or Parquet) and --output FOLDER" in err
