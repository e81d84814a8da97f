"""Generates the configuration reference in docs/operations.md from the settings dataclasses
themselves (key, type, default, and the comment written next to the field), so the reference
cannot drift from the code. tests/test_docs.py fails when the checked-in text is stale.

    python -m scripts.config_reference           # print the tables
    python -m scripts.config_reference --write   # rewrite the block in docs/operations.md
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import re
import tokenize
from pathlib import Path
from typing import Any

from api.settings import ApiSection
from core.config import ChainSettings, DatabaseSettings, RedisSettings, ServicesSettings
from core.deploy import DeploySettings
from indexer.settings import IndexerOptions
from keeper.settings import KeeperSettings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operations.md"
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"

SECTIONS: list[tuple[str, type[Any], str]] = [
    ("services", ServicesSettings, "Local stack (scripts/services.sh, `make run`): ports of what it starts."),
    ("database", DatabaseSettings, "PostgreSQL. `GL_DATABASE__DSN` overrides; never commit a password."),
    ("redis", RedisSettings, "Redis: API cache, rate limits, feed fan-out, outbox notices."),
    ("chain", ChainSettings, "The chain one indexer/keeper process serves (one process per chain)."),
    ("deploy", DeploySettings, "What `python -m scripts.deploy` fixes in the contracts (immutable once deployed)."),
    ("indexer", IndexerOptions, "The indexer daemon (`python -m indexer`)."),
    ("keeper", KeeperSettings, "The keeper daemon (`python -m keeper run`)."),
    ("api", ApiSection, "The read API and the websocket feed (`python -m api`)."),
]


def field_comments(cls: type[Any]) -> dict[str, str]:
    """Comment text for each field: trailing `# …` on its line, else the comment lines just above it."""
    source = inspect.getsource(cls)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out: dict[str, str] = {}
    for i, line in enumerate(lines, start=1):
        m = re.match(r"\s+([a-z_][a-z0-9_]*)\s*:\s*[^=]+(=|$)", line)
        if not m or line.strip().startswith("#"):
            continue
        name = m.group(1)
        if i in comments and not line.strip().startswith("#"):
            out[name] = comments[i]
            continue
        above = []
        j = i - 1
        while j in comments and lines[j - 1].strip().startswith("#"):
            if lines[j - 1].strip().startswith("# ----"):
                break
            above.insert(0, comments[j])
            j -= 1
        out[name] = " ".join(above)
    return out


def default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    if isinstance(value, int) and abs(value) >= 10**7:
        return f"`{value:_}`"
    return f"`{value}`"


def type_text(hint: Any) -> str:
    text = getattr(hint, "__name__", None) or str(hint)
    return text.replace("typing.", "").replace("tuple[str, ...]", "list of strings")


def reference() -> str:
    parts = []
    for name, cls, about in SECTIONS:
        comments = field_comments(cls)
        hints = {k: v for k, v in cls.__annotations__.items()}
        parts.append(f"### [{name}]\n\n{about}\n\n| key | type | default | meaning |\n|---|---|---|---|")
        for f in dataclasses.fields(cls):
            meaning = comments.get(f.name, "").replace("|", "\\|")
            parts.append(f"| `{f.name}` | {type_text(hints[f.name])} | {default_text(f)} | {meaning} |")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def render(doc: str) -> str:
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{reference()}{END}{tail}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true")
    a = p.parse_args()
    if a.write:
        DOC.write_text(render(DOC.read_text()))
        print(f"updated {DOC}")
    else:
        print(reference())


if __name__ == "__main__":
    main()
