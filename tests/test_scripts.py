"""scripts/: every script has its line in scripts/README.md, and none imports a private lsfa name.

Why: the scripts are tools people run again, so they must keep working as lsfa's internals move; a private name
(``_shared_prefix``) is not promised to stay, a public one is (or the move breaks a test). And a script nobody
can find in the README is one nobody runs again.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _scripts() -> list[str]:
    """Every script below scripts/, as its path there (``speed-checks/kernels_micro.py``)."""
    return sorted(
        str(path.relative_to(SCRIPTS))
        for path in SCRIPTS.rglob("*")
        if path.is_file() and path.suffix in (".py", ".sh") and "__pycache__" not in path.parts
    )


def _listed() -> list[str]:
    """The scripts scripts/README.md lists: the first cell of each table row."""
    return re.findall(r"^\| `([^`]+)` \|", (SCRIPTS / "README.md").read_text(), flags=re.MULTILINE)


def private_lsfa_imports(source: str) -> list[str]:
    """``lsfa.x._y`` modules and ``_name`` names imported from lsfa in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lsfa":
            parts = node.module.split(".")  # type: ignore[union-attr]
            found += [node.module for part in parts if part.startswith("_")]  # type: ignore[misc]
            found += [f"{node.module}.{alias.name}" for alias in node.names if alias.name.startswith("_")]
        elif isinstance(node, ast.Import):
            found += [
                alias.name
                for alias in node.names
                if alias.name.split(".")[0] == "lsfa" and any(part.startswith("_") for part in alias.name.split("."))
            ]
    return found


def test_every_script_has_its_line_in_the_readme() -> None:
    scripts, listed = _scripts(), _listed()
    assert scripts, "no scripts found"
    assert [name for name in scripts if name not in listed] == [], "add a line to scripts/README.md"
    assert [name for name in listed if name not in scripts] == [], "scripts/README.md lists a script that is gone"


def test_scripts_import_no_private_lsfa_name() -> None:
    found = {name: private_lsfa_imports((SCRIPTS / name).read_text()) for name in _scripts() if name.endswith(".py")}
    assert {name: names for name, names in found.items() if names} == {}


def test_the_private_import_check_finds_them() -> None:
    source = "from lsfa.baselines.ift import _shared_prefix, build_prompt\nimport lsfa._hidden\nfrom lsfa import x\n"
    assert private_lsfa_imports(source) == ["lsfa.baselines.ift._shared_prefix", "lsfa._hidden"]
