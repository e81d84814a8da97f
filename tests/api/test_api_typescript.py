"""The published OpenAPI document and the TypeScript types generated from it (pinned
openapi-typescript, package.json) are current, and type-check together with a small frontend-style
file (docs/schemas/api/usage.ts) under the pinned `tsc`: a breaking change to a response fails here.

Regenerate after changing a response or parameter:
    GL_UPDATE_CONTRACT=1 .venv/bin/python -m pytest tests/api/test_api_typescript.py
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest

from api.openapi import spec
from api.settings import ApiSection, Settings

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIR = ROOT / "docs" / "schemas" / "api"
BIN = ROOT / "node_modules" / ".bin"
UPDATE = os.environ.get("GL_UPDATE_CONTRACT") == "1"


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} missing: run `npm ci` (package.json pins openapi-typescript and typescript)")
    return str(path)


def _document() -> str:
    settings = Settings(
        chain_id=31337, dsn="", read_dsn="", redis_url="", api=ApiSection(), jwt_secret="x", cursor_secret=b"x"
    )
    return json.dumps(spec(settings), indent=1, ensure_ascii=False) + "\n"


def _generate(document: pathlib.Path, out: pathlib.Path) -> None:
    subprocess.run(
        [_tool("openapi-typescript"), str(document), "-o", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )


def _tsc(project: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("tsc"), "-p", str(project / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )


def test_published_document_is_current() -> None:
    """docs/schemas/api/openapi.json is what the app serves (for chain 31337)."""
    current = _document()
    path = DIR / "openapi.json"
    if UPDATE:
        path.write_text(current)
    assert path.read_text() == current, (
        "docs/schemas/api/openapi.json is stale: GL_UPDATE_CONTRACT=1 pytest tests/api/test_api_typescript.py"
    )


def test_endpoint_reference_in_docs_is_the_generators_output() -> None:
    """docs/api.md's "Endpoint reference" is exactly what the command it names prints
    (`.venv/bin/python -m api.openapi --markdown`), run as a user would."""
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "api.openapi", "--markdown"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("### ")
    assert done.stdout.strip() in (ROOT / "docs" / "api.md").read_text(), (
        "docs/api.md's endpoint reference is stale: paste the output of .venv/bin/python -m api.openapi --markdown"
    )


def test_generated_types_are_current_and_type_check(tmp_path: pathlib.Path) -> None:
    """Regenerating api.d.ts from the document gives the committed file; tsc --noEmit passes."""
    document = tmp_path / "openapi.json"
    document.write_text(_document())
    fresh = tmp_path / "api.d.ts"
    _generate(document, fresh)
    committed = DIR / "api.d.ts"
    if UPDATE:
        shutil.copyfile(fresh, committed)
    assert committed.read_text() == fresh.read_text(), (
        "docs/schemas/api/api.d.ts is stale: GL_UPDATE_CONTRACT=1 pytest tests/api/test_api_typescript.py"
    )
    done = _tsc(DIR)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_breaking_response_change_fails_the_type_check(tmp_path: pathlib.Path) -> None:
    """The guard works: with Market.endDate renamed in the generated types, usage.ts no longer compiles."""
    for name in ("tsconfig.json", "usage.ts"):
        shutil.copyfile(DIR / name, tmp_path / name)
    types = (DIR / "api.d.ts").read_text()
    assert "            endDate: string;" in types
    (tmp_path / "api.d.ts").write_text(types.replace("            endDate: string;", "            endTime: string;"))
    done = _tsc(tmp_path)
    assert done.returncode != 0
    assert "endDate" in done.stdout, done.stdout
