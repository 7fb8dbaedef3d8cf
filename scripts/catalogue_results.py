"""Rebuild src/lsfa/models/results.json (the test F1 and speed `lsfa models` shows) from the committed cells.

    python scripts/catalogue_results.py [CELLS_DIR]

Run it whenever a cell under docs/results/cpu-paper/cells changes; tests/models/test_catalogue_results.py fails
until the packaged file agrees with the cells again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lsfa.models.catalogue import CATALOGUE
from lsfa.models.results import RESULTS_FILE, build_results

ROOT = Path(__file__).resolve().parent.parent
CELLS = ROOT / "docs" / "results" / "cpu-paper" / "cells"
TARGET = ROOT / "src" / "lsfa" / "models" / RESULTS_FILE


def main(cells_dir: Path = CELLS) -> None:
    """Write the record and say how many models it covers."""
    record = build_results(cells_dir, list(CATALOGUE))
    TARGET.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{TARGET.relative_to(ROOT)}: {len(record['models'])} of {len(CATALOGUE)} catalogue models")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else CELLS)
