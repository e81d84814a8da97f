"""The analysts' login (sql/070): `analyst` logs in, runs every query of docs/sql.md verbatim, reads
every view in schema public, and is refused the indexer's, keeper's and API's own tables."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

from indexer.migrate import ANALYST_PASSWORD_ENV, apply_migrations

pytestmark = [pytest.mark.pg]
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "sql.md"


def doc_queries() -> list[str]:
    """Every statement of every ```sql block in docs/sql.md, except blocks marked illustration-only."""
    text = DOC.read_text()
    out = []
    for m in re.finditer(r"(<!-- illustration only -->\n)?```sql\n(.*?)```", text, re.S):
        if m.group(1):
            continue
        body = "\n".join(line for line in m.group(2).splitlines() if not line.lstrip().startswith("--"))
        out += [s.strip() for s in body.split(";") if s.strip()]
    return out


async def test_analyst_logs_in_runs_the_documented_queries_and_nothing_else(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With GL_ANALYST_PASSWORD set, migrate gives `analyst` a login and that password; as analyst the
    docs' queries and every public view run, idx/keeper/api tables are refused."""
    monkeypatch.setenv(ANALYST_PASSWORD_ENV, "s3cret-'quoted")
    admin = await asyncpg.connect(db_dsn)
    try:
        await apply_migrations(admin)
        role = await admin.fetchrow(
            "SELECT rolcanlogin, rolpassword IS NOT NULL AS has_password FROM pg_authid WHERE rolname = 'analyst'"
        )
        assert role is not None
        assert role["rolcanlogin"]
        assert role["has_password"]
        views = [
            r["table_name"]
            for r in await admin.fetch(
                "SELECT table_name FROM information_schema.views WHERE table_schema = 'public' ORDER BY 1"
            )
        ]
    finally:
        await admin.close()
    assert len(views) >= 10, views
    queries = doc_queries()
    assert len(queries) >= 3, queries
    analyst = await asyncpg.connect(db_dsn.replace("://guesslyfe@", "://analyst:s3cret-'quoted@"))
    try:
        assert await analyst.fetchval("SELECT current_user") == "analyst"
        for q in queries:
            await analyst.fetch(q)
        for v in views:
            await analyst.fetch(f'SELECT * FROM public."{v}" LIMIT 1')
        await analyst.fetch("SELECT * FROM agg.platform_minutes LIMIT 1")
        for table in ("idx.markets", "idx.ev_trade", "keeper.txs", "keeper.resolution_queue", "api.siwe_nonces"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await analyst.fetch(f"SELECT * FROM {table} LIMIT 1")
    finally:
        await analyst.close()
