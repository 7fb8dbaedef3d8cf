"""Table and plot of dev F1 against speed from the bench files of scripts/pareto.sh.

python scripts/pareto_plot.py docs/results/pareto

``k<K>-<precision>.json``: the decoder tagger keeping its first K layers, at that precision.
``peer-<encoder>.json``: a bench with ``--compare``: the encoder and the spaCy peer timed beside the K=30 tagger
on the same sentences. spaCy is timed once per peer file; each timing is a row.
"""

import json
import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def point(system: str, group: str, layers: int | None, f1, speed: dict, path: Path, result: dict) -> dict:
    """A row of the table and a point of the plot: a system's dev F1 and its speed in one bench file."""
    return {"system": system, "group": group, "layers": layers, "f1": f1,
            "sentences_per_second": speed["sentences_per_second"], "words_per_second": speed.get("words_per_second"),
            "source": path.name, "cpu": result["machine"].get("cpu_model")}  # fmt: skip


def decoder_rows(root: Path) -> list[dict]:
    """One row per decoder bench file: the optimised path's speed and its F1 on the bench sentences."""
    rows = []
    for path in sorted(root.glob("k*-*.json")):
        result = json.loads(path.read_text())
        optimised = result["inference"]["optimised"]
        layers = int(path.stem.split("-", 1)[0][1:])
        f1 = result["inference"]["agreement"]["f1"]["optimised"]
        rows.append(point(f"smollm2-135m K={layers}", optimised["precision"], layers, f1, optimised, path, result))
    return rows


def peer_rows(root: Path) -> list[dict]:
    """The encoder and spaCy entries of each ``--compare`` bench file (skipped entries say why on stderr)."""
    rows = []
    for path in sorted(root.glob("peer-*.json")):
        result = json.loads(path.read_text())
        for name, row in result.get("compare", {}).items():
            if "skipped" in row:
                print(f"{path.name}: {name} skipped: {row['skipped']}", file=sys.stderr)
                continue
            label = path.stem.removeprefix("peer-") if name == "encoder" else "spaCy peer"
            rows.append(point(label, name, None, row.get("f1"), row, path, result))
    return rows


def table(rows: list[dict]) -> str:
    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = ["| system | kind | dev F1 | sentences/s | words/s | file | CPU |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['system']} | {r['group']} | {number(r['f1'], 4)} | {number(r['sentences_per_second'], 1)} | "
              f"{number(r['words_per_second'], 0)} | {r['source']} | {r['cpu']} |" for r in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    figure = Figure(figsize=(6, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for group in sorted({r["group"] for r in rows}):
        chosen = [r for r in rows if r["group"] == group and r["f1"] is not None]
        style = "o-" if chosen and chosen[0]["layers"] is not None else "s"
        axes.plot([r["sentences_per_second"] for r in chosen], [r["f1"] for r in chosen], style, label=group)
        for r in chosen:
            text = f"K={r['layers']}" if r["layers"] is not None else r["system"]
            axes.annotate(text, (r["sentences_per_second"], r["f1"]), fontsize=7)
    axes.set_xscale("log")
    axes.set_xlabel("sentences per second (CPU, log scale)")
    axes.set_ylabel("dev strict F1")
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def main(root: Path) -> None:
    decoders = sorted(decoder_rows(root), key=lambda r: (-r["layers"], r["group"]))
    rows = decoders + peer_rows(root)
    (root / "pareto.md").write_text(table(rows))
    plot(rows, root / "pareto.png")
    print(table(rows))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
