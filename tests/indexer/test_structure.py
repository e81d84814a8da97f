"""The pure stages of the indexer (plan, decode, fold, rows) import no I/O module, directly or through
another module of ours; no wing imports another; no module is built with eval/exec."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ("indexer.chain", "indexer.decode", "indexer.fold", "indexer.rows", "indexer.rawlogs", "indexer.wire")
IO = ("asyncpg", "aiohttp", "websockets", "redis", "core.rpc", "indexer.rpc", "indexer.fetch", "subprocess", "socket")


def imports(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names if (ROOT / node.module.replace(".", "/")).is_dir()}
    return names


def closure(module: str) -> set[str]:
    """Every module `module` imports, following our own packages (indexer, core)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        for name in imports(m):
            if name in seen:
                continue
            seen.add(name)
            if name.split(".")[0] in ("indexer", "core") and (
                (ROOT / (name.replace(".", "/") + ".py")).exists() or (ROOT / name.replace(".", "/")).is_dir()
            ):
                todo.append(name)
    return seen


def test_the_walk_sees_io_through_our_modules() -> None:
    """The check below is not vacuous: service reaches asyncpg through write, and aiohttp through rpc."""
    assert {"asyncpg", "aiohttp", "indexer.write", "core.rpc"} <= closure("indexer.service")


@pytest.mark.parametrize("module", PURE)
def test_a_pure_stage_imports_no_io_module(module: str) -> None:
    found = {n for n in closure(module) if any(n == io or n.startswith(io + ".") for io in IO)}
    assert not found, f"{module} reaches I/O modules {sorted(found)}"


def test_no_code_is_generated_with_eval_or_exec() -> None:
    for package in ("indexer", "core", "keeper", "api"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id not in ("eval", "exec"), f"{path.relative_to(ROOT)}:{node.lineno}"
