"""The frontier table and plot (issue #34 item 4): each system's test F1 from its committed full-data cell, beside
what its architecture costs in one `lsfa bench` run per corpus and thread count.

    python scripts/frontier_report.py docs/results/frontier

Reads the bench JSON files of scripts/frontier-bench.sh (``<corpus>-t<threads>.json``: one run timing every
system on the same sentences) and the cells' metrics.json; writes ``frontier.json`` (a list of objects, one per
corpus and system, each naming CPU, commit and date), ``table.md`` and ``frontier.png`` into the same folder.
The bench ran on two-step stand-ins (configs/experiments/frontier-speed.yaml), so its own F1 figures are
meaningless and never read here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
CORPORA = {"conll2003": "CoNLL-2003", "bc5cdr": "BC5CDR"}
FRONTIER = "docs/results/frontier-cells/cells/{corpus}"
PAPER = "docs/results/cpu-paper/cells/{corpus}"
# system -> (the committed cell whose test tags give its F1, with {corpus}; the bench entry that times it:
# "optimised" is the main tagger's fast path, any other name a key of the bench's "compare")
SYSTEMS = {
    "gemma3-270m": (f"{FRONTIER}/gemma3-270m/lora/full/seed42", "optimised"),
    "gemma3-270m layers=9 distilled": (
        "docs/results/frontier-distill-cells/cells/{corpus}/gemma3-270m-k9-kd/lora/full/seed42",
        "gemma3-270m-k9",
    ),
    "gemma3-270m layers=9": (f"{FRONTIER}/gemma3-270m-k9/lora/full/seed42", "gemma3-270m-k9"),
    "smollm2-135m": (f"{PAPER}/smollm2-135m/lora/full/seed42", "smollm2-135m"),
    "smollm2-135m layers=20": (f"{FRONTIER}/smollm2-135m-k20/lora/full/seed42", "smollm2-135m-k20"),
    "mpnet-base": (f"{PAPER}/mpnet-base/full/full/seed42", "encoder"),
    "minilm-l6": (f"{PAPER}/minilm-l6/full/full/seed42", "minilm-l6"),
    "spaCy peer": (f"{PAPER}/spacy/tok2vec/none/seed42", "spacy"),
}


def test_f1(cell: str) -> float:
    """Strict micro F1 on the test split, as every lsfa cell records it."""
    metrics = json.loads((RESULTS.parents[1] / cell / "metrics.json").read_text())
    return metrics["test"]["micro"]["f1"]


def timed(bench: dict, entry: str) -> tuple[dict, dict | None]:
    """Throughput row and batch-1 latency row (None for spaCy, which has none) of one system in one bench."""
    if entry == "optimised":
        return bench["inference"]["optimised"], bench["latency"]["optimised"]
    return bench["compare"][entry], bench["latency"].get(entry)


def rows(folder: Path) -> tuple[list[dict], dict]:
    """One object per corpus and system, and the bench runs' common facts."""
    benches = {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*-t[0-9].json"))}
    table = []
    for corpus in CORPORA:
        for system, (cell, entry) in SYSTEMS.items():
            cell = cell.format(corpus=corpus)
            row = {"corpus": corpus, "system": system, "test_f1": test_f1(cell), "cell": cell}
            for threads in (1, 2):
                bench = benches.get(f"{corpus}-t{threads}")
                if bench is None:
                    continue
                speed, latency = timed(bench, entry)
                row[f"sentences_per_s_{threads}t"] = speed["sentences_per_second"]
                row[f"words_per_s_{threads}t"] = speed["words_per_second"]
                row[f"ms_per_sentence_batch1_{threads}t"] = latency["mean_ms"] if latency else None
                row[f"extra_rss_mb_{threads}t"] = (speed.get("memory") or {}).get("call_extra_mb")
                row[f"precision_{threads}t"] = speed.get("precision")
            table.append(row)
    first = next(iter(benches.values()))
    facts = {
        "cpu": first["machine"].get("cpu_model"),
        "commits": sorted({b["machine"].get("git_commit") for b in benches.values()}),
        "dates": sorted({b["date"][:10] for b in benches.values()}),
        "sentences": {name: b["data"]["sentences"] for name, b in benches.items()},
        "process_peak_rss_mb": {name: b["memory"]["process_peak_rss_mb"] for name, b in benches.items()},
        "commands": {name: b["command"] for name, b in benches.items()},
    }
    return table, facts


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(table: list[dict], facts: dict) -> str:
    lines = [
        f"`lsfa bench`, one run per corpus and thread count, the first {max(facts['sentences'].values()):,} test "
        f"sentences; {facts['cpu']}, commit {', '.join(facts['commits'])}, {', '.join(facts['dates'])}. Test F1 "
        "from each system's committed full-data cell (`cell` in frontier.json).",
        "",
    ]
    for corpus, title in CORPORA.items():
        chosen = [r for r in table if r["corpus"] == corpus]
        mpnet = next(r for r in chosen if r["system"] == "mpnet-base")
        lines += [
            f"**{title}**",
            "",
            "| system | test F1 | sent/s 1t | sent/s 2t | x mpnet-base 1t / 2t | words/s 2t | ms/sentence batch 1, 2t "
            "| extra RSS MB 2t |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in chosen:
            ratios = [
                row.get(f"sentences_per_s_{t}t", 0) / mpnet[f"sentences_per_s_{t}t"]
                if mpnet.get(f"sentences_per_s_{t}t") and row.get(f"sentences_per_s_{t}t")
                else None
                for t in (1, 2)
            ]
            lines.append(
                f"| {row['system']} | {row['test_f1']:.4f} | {_number(row.get('sentences_per_s_1t'), 1)} | "
                f"{_number(row.get('sentences_per_s_2t'), 1)} | {_number(ratios[0], 2)} / {_number(ratios[1], 2)} | "
                f"{_number(row.get('words_per_s_2t'), 0)} | {_number(row.get('ms_per_sentence_batch1_2t'), 1)} | "
                f"{_number(row.get('extra_rss_mb_2t'), 0)} |"
            )
        lines.append("")
    peaks = facts["process_peak_rss_mb"].values()
    lines.append(
        f"All systems are loaded in one process (peak RSS {min(peaks):,.0f}-{max(peaks):,.0f} MB per run), so a "
        "system's own memory is shown as the extra RSS while it tags, not a separate peak."
    )
    return "\n".join(lines) + "\n"


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 2, figsize=(12, 4.5))
    for axes, (corpus, title) in zip(panels, CORPORA.items(), strict=True):
        for row in (r for r in table if r["corpus"] == corpus):
            for threads, marker in ((1, "o"), (2, "s")):
                speed = row.get(f"sentences_per_s_{threads}t")
                if speed:
                    axes.plot(speed, row["test_f1"], marker, color="C0" if threads == 1 else "C1")
            if row.get("sentences_per_s_2t"):
                axes.annotate(row["system"], (row["sentences_per_s_2t"], row["test_f1"]), fontsize=7)
        axes.set_xscale("log")
        axes.set_xlabel("sentences / s (circles: 1 thread, squares: 2 threads)")
        axes.set_ylabel("test F1")
        axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=130)


def main(folder: str) -> None:
    out = Path(folder)
    table, facts = rows(out)
    where = {"cpu": facts["cpu"], "commit": ", ".join(facts["commits"]), "date": ", ".join(facts["dates"])}
    (out / "frontier.json").write_text(json.dumps([row | where for row in table], indent=2) + "\n")
    (out / "table.md").write_text(markdown(table, facts))
    plot(table, out / "frontier.png")
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(RESULTS / "frontier"))
