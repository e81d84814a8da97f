"""Docs that are generated or cross-linked stay true."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.config_reference import DOC, render

ROOT = Path(__file__).resolve().parent.parent


def test_config_reference_is_current() -> None:
    """docs/operations.md lists every config key with its current default (regenerate with --write)."""
    text = DOC.read_text()
    assert text == render(text), "run: python -m scripts.config_reference --write"


def test_every_local_link_in_docs_resolves() -> None:
    """Relative links in README.md and docs/*.md point at files that exist."""
    missing = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, missing
