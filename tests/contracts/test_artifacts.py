"""The checked-in abi/ and artifacts/ are exactly what contracts/ compiles to (no stale artifacts)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from core.contracts import CONTRACT_NAMES
from tests.chain import ROOT


def test_checked_in_abis_and_artifacts_match_a_fresh_compile(tmp_path: Path) -> None:
    """`node scripts/compile.js TMP` reproduces every abi/*.json and artifacts/*.json byte for byte."""
    result = subprocess.run(
        ["node", str(ROOT / "scripts" / "compile.js"), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for folder in ("abi", "artifacts"):
        fresh = sorted(p.name for p in (tmp_path / folder).iterdir())
        assert fresh == sorted(f"{n}.json" for n in CONTRACT_NAMES)
        for name in fresh:
            stale = (ROOT / folder / name).read_bytes() != (tmp_path / folder / name).read_bytes()
            assert not stale, f"{folder}/{name} is stale: run `make contracts` and commit the result"
