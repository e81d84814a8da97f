"""The keeper wing imports neither the API nor the indexer (shared code lives in core/), and
`python -m keeper` is a thin entry over keeper.cli."""

from __future__ import annotations

import ast

from tests.chain import ROOT


def imported_packages(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):  # every import, at module level or deferred inside a function
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_keeper_imports_no_other_wing() -> None:
    """No module of keeper/ imports api or indexer, not even inside a function."""
    offenders = {
        p.relative_to(ROOT).as_posix(): sorted(imported_packages(str(p.relative_to(ROOT))) & {"api", "indexer"})
        for p in sorted((ROOT / "keeper").glob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_core_imports_no_wing() -> None:
    """core/ is below the wings: it imports none of them."""
    for p in sorted((ROOT / "core").glob("*.py")):
        assert not imported_packages(str(p.relative_to(ROOT))) & {"api", "indexer", "keeper"}, p.name


def test_main_is_a_thin_entry() -> None:
    """keeper/__main__.py only hands over to keeper.cli.main."""
    assert imported_packages("keeper/__main__.py") == {"sys", "keeper"}
    assert len((ROOT / "keeper" / "__main__.py").read_text().splitlines()) < 15
