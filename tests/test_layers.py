"""The boundaries of the code, checked: the pure core imports no I/O module and adapters never
import the front ends (the import-linter contracts in pyproject.toml), and the core never uses
the global random generator (only seeded ``random.Random`` instances)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CORE = CONFIG["contracts"][0]["source_modules"]


def test_the_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None, "import-linter is a dev dependency (pip install -e '.[dev]')"
    r = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout and r.stdout.count("KEPT") == len(CONFIG["contracts"])


def test_the_contract_lists_every_core_module_that_exists() -> None:
    for name in CORE:
        assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name


def test_the_core_never_uses_the_global_random_generator() -> None:
    for name in CORE:
        tree = ast.parse((ROOT / (name.replace(".", "/") + ".py")).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "random":
                assert [a.name for a in node.names] == ["Random"], f"{name}: from random import"
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "random"
            ):
                assert node.attr == "Random", f"{name}:{node.lineno}: random.{node.attr}"


def test_the_architecture_page_names_every_module() -> None:
    """docs/architecture.md gives every module its one job: a module added without a line there
    fails here."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set()
    for cell in page.split("`"):
        for part in cell.replace(",", " ").split():
            named.add(part.strip().removesuffix("/"))
    package = ROOT / "ssevcr"
    missing = []
    for path in sorted(package.rglob("*.py")):
        if "scripts" in path.parts or "_templates" in path.parts:
            continue
        rel = path.relative_to(package).with_suffix("")
        name = rel.as_posix()
        if name in ("__init__", "mitm/__init__"):
            continue
        short = name.removesuffix("/__init__")
        if short not in named and rel.name not in named and f"cli/{rel.name}" not in named:
            missing.append(name)
    assert not missing, f"not in docs/architecture.md: {missing}"
