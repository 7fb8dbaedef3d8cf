"""The frontier table and plot (issue #34 item 4): test F1 of every system from its committed full-data cell,
beside the sentences per second its architecture tags in `lsfa bench` at 1 and 2 threads.

    python scripts/frontier_report.py docs/results/frontier

Reads the bench JSON files that scripts/frontier-bench.sh writes (``<decoder>-t<threads>.json``, each timing one
decoder with an encoder and spaCy beside it) and the cells' metrics.json; writes frontier.json, table.md and
frontier.png into the same folder. The bench ran on two-step stand-ins (configs/experiments/frontier-speed.yaml),
so its own F1 figures are meaningless and never read here.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
CORPORA = ("conll2003", "bc5cdr")
FRONTIER = "frontier-cells/cells/{corpus}"
PAPER = "cpu-paper/cells/{corpus}"
# system -> (its full-data cell under docs/results, with {corpus}; the bench file and the entry that time it)
SYSTEMS = {
    "gemma3-270m LS-FA LoRA (18 layers)": (f"{FRONTIER}/gemma3-270m/lora/full/seed42", "gemma3-270m", "optimised"),
    "gemma3-270m K=9, distilled": (
        "frontier-distill-cells/cells/{corpus}/gemma3-270m-k9-kd/lora/full/seed42",
        "gemma3-270m-k9",
        "optimised",
    ),
    "gemma3-270m K=9, gold only": (f"{FRONTIER}/gemma3-270m-k9/lora/full/seed42", "gemma3-270m-k9", "optimised"),
    "smollm2-135m K=20": (f"{FRONTIER}/smollm2-135m-k20/lora/full/seed42", "smollm2-135m-k20", "optimised"),
    "mpnet-base (full FT)": (f"{PAPER}/mpnet-base/full/full/seed42", "gemma3-270m", "encoder"),
    "minilm-l6 (full FT)": (f"{PAPER}/minilm-l6/full/full/seed42", "smollm2-135m-k20", "encoder"),
    "spaCy tok2vec (efficiency)": (f"{PAPER}/spacy/tok2vec/none/seed42", "gemma3-270m", "spacy"),
}


def test_f1(cell: str, corpus: str) -> float:
    """Strict micro F1 on the test split, as every lsfa cell records it."""
    metrics = json.loads((RESULTS / cell.format(corpus=corpus) / "metrics.json").read_text())
    return metrics["test"]["micro"]["f1"]


def entry(bench: dict, which: str) -> dict:
    return bench["inference"]["optimised"] if which == "optimised" else bench["compare"][which]


def rows(folder: Path) -> tuple[list[dict], dict]:
    """One row per system, and the bench files' common facts (CPU, commit, spaCy's spread across files)."""
    benches = {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*-t[0-9].json"))}
    table = []
    for system, (cell, decoder, which) in SYSTEMS.items():
        row = {"system": system, "test_f1": {corpus: test_f1(cell, corpus) for corpus in CORPORA}, "speed": {}}
        for threads in (1, 2):
            bench = benches.get(f"{decoder}-t{threads}")
            if bench is not None:
                timed = entry(bench, which)
                row["speed"][threads] = {
                    "sentences_per_second": timed["sentences_per_second"],
                    "precision": timed.get("precision"),
                    "source": f"{decoder}-t{threads}.json",
                }
        table.append(row)
    anchor = {
        name: b["compare"]["spacy"]["sentences_per_second"] for name, b in benches.items() if "spacy" in b["compare"]
    }
    any_bench = next(iter(benches.values()))
    facts = {"cpu": any_bench["machine"].get("cpu_model"), "commit": any_bench["machine"].get("git_commit"),
             "dates": sorted({b["date"][:10] for b in benches.values()}), "sentences": any_bench["data"]["sentences"],
             "corpus": any_bench["data"]["corpus"], "split": any_bench["data"]["split"],
             "spacy_anchor_sentences_per_second": anchor,
             "commands": {name: b["command"] for name, b in benches.items()}}  # fmt: skip
    return table, facts


def markdown(table: list[dict], facts: dict) -> str:
    mpnet = next(r for r in table if r["system"].startswith("mpnet"))
    lines = [
        f"Speed: `lsfa bench` on {facts['corpus']} {facts['split']}[:{facts['sentences']}], {facts['cpu']}, commit "
        f"{facts['commit']}, {', '.join(facts['dates'])}; F1: test split of each system's full-data cell.",
        "",
        "| system | CoNLL-2003 test F1 | BC5CDR test F1 | sent/s, 1 thread | sent/s, 2 threads "
        "| x mpnet-base, 1 / 2 threads |",
        "|---|---|---|---|---|---|",
    ]
    for row in table:
        speed = [row["speed"].get(t, {}).get("sentences_per_second") for t in (1, 2)]
        base = [mpnet["speed"].get(t, {}).get("sentences_per_second") for t in (1, 2)]
        ratio = " / ".join(f"{s / b:.2f}" if s and b else "-" for s, b in zip(speed, base, strict=True))
        shown = [f"{s:.1f}" if s else "-" for s in speed]
        f1 = row["test_f1"]
        lines.append(
            f"| {row['system']} | {f1['conll2003']:.4f} | {f1['bc5cdr']:.4f} | {shown[0]} | {shown[1]} | {ratio} |"
        )
    anchor = list(facts["spacy_anchor_sentences_per_second"].values())
    if len(anchor) > 1:
        lines += ["", f"spaCy, timed in every bench file as a drift check: {min(anchor):.0f}-{max(anchor):.0f} "
                      f"sentences/s (median {statistics.median(anchor):.0f})."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for axes, corpus, title in zip(panels, CORPORA, ("CoNLL-2003", "BC5CDR"), strict=True):
        for row in table:
            speed = row["speed"].get(2, {}).get("sentences_per_second")
            if speed:
                axes.plot(speed, row["test_f1"][corpus], "o")
                axes.annotate(row["system"], (speed, row["test_f1"][corpus]), fontsize=7)
        axes.set_xscale("log")
        axes.set_xlabel("sentences / s (2 threads, BC5CDR test sentences)")
        axes.set_ylabel("test F1")
        axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=130)


def main(folder: str) -> None:
    out = Path(folder)
    table, facts = rows(out)
    (out / "frontier.json").write_text(json.dumps({"facts": facts, "systems": table}, indent=2) + "\n")
    (out / "table.md").write_text(markdown(table, facts))
    plot(table, out / "frontier.png")
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(RESULTS / "frontier"))
