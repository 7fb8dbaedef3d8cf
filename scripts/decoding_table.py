"""The table of docs/results/decoding-confidence.md from the calibration.json files of each tagger.

python scripts/decoding_table.py docs/results/decoding-confidence
"""

import json
import sys
from pathlib import Path

root = Path(sys.argv[1])


def _ece(report: dict, name: str) -> str:
    """ECE (temperature) of one calibration; "-" for reports written before lsfa fitted T on both."""
    if name not in report:
        return "-"
    temperature = report[name].get("temperature", report["temperature"]["used"])
    return f"{report[name]['ece']:.4f} ({temperature:.2f})"


print(
    "| tagger | split | F1 argmax | F1 viterbi | ill-formed argmax tags | ECE T=1 | ECE calibrated (T) "
    "| ECE entity-fitted T (T) "
    "| threshold for P 0.95 (dev) | test P / R / F1 there | model ms/sent | viterbi ms/sent |"
)
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(root.glob("*/calibration.json")):
    report = json.loads(path.read_text())
    timing = report["timing"]
    target = report.get("target_precision", {})
    chosen = target.get("test") or {}
    there = f"{chosen['precision']:.3f} / {chosen['recall']:.3f} / {chosen['f1']:.3f}" if chosen else "-"
    for split in ("dev", "test"):
        scores = report["decodings"][split]
        test = split == "test"
        cells = [
            path.parent.name,
            split,
            f"{scores['argmax']['f1']:.4f}",
            f"{scores['viterbi']['f1']:.4f}",
            str(scores["argmax_ill_formed_tags"]),
            f"{report['uncalibrated']['ece']:.4f}" if test else "",
            _ece(report, "calibrated") if test else "",
            _ece(report, "entity_calibrated") if test else "",
            str(target.get("threshold_chosen_on_dev", "-")) if test else "",
            there if test else "",
            f"{timing['model_ms_per_sentence']:.2f}",
            f"{timing['viterbi_ms_per_sentence']:.3f}",
        ]
        print("| " + " | ".join(cells) + " |")
