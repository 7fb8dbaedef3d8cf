"""Table and plot of F1 against sentences per second from the bench files of scripts/pareto.sh.

python scripts/pareto_plot.py docs/results/pareto
"""

import json
import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

root = Path(sys.argv[1])
rows = []
for path in sorted(root.glob("k*-*.json")):
    result = json.loads(path.read_text())
    inference = result["inference"]
    layers, precision = path.stem.split("-", 1)
    rows.append({"layers": int(layers[1:]), "precision": inference["optimised"]["precision"],
                 "asked": precision, "f1": inference["agreement"]["f1"]["optimised"],
                 "sentences_per_second": inference["optimised"]["sentences_per_second"],
                 "cpu": result["machine"].get("cpu_model")})  # fmt: skip
lines = ["| layers kept | precision | dev F1 | sentences/s | CPU |", "|---|---|---|---|---|"]
lines += [f"| {r['layers']} | {r['precision']} | {r['f1']:.4f} | {r['sentences_per_second']:.1f} | {r['cpu']} |"
          for r in sorted(rows, key=lambda r: (-r["layers"], r["precision"]))]  # fmt: skip
(root / "pareto.md").write_text("\n".join(lines) + "\n")
figure = Figure(figsize=(5.5, 4), dpi=110)
FigureCanvasAgg(figure)
axes = figure.add_subplot(1, 1, 1)
for precision in sorted({r["precision"] for r in rows}):
    chosen = [r for r in rows if r["precision"] == precision]
    axes.plot([r["sentences_per_second"] for r in chosen], [r["f1"] for r in chosen], "o-", label=precision)
    for r in chosen:
        axes.annotate(f"K={r['layers']}", (r["sentences_per_second"], r["f1"]), fontsize=7)
axes.set_xlabel("sentences per second (CPU)")
axes.set_ylabel("dev strict F1")
axes.legend(loc="lower left")
figure.tight_layout()
figure.savefig(root / "pareto.png")
print("\n".join(lines))
