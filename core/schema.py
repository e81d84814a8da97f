"""The database schema a build expects: the numbered files sql/NNN_name.sql, applied in order by
`python -m indexer migrate` (indexer/migrate.py). Every program checks at start that the database
holds exactly this build's migrations (review h4: a keeper on a database behind its build crashed with
a traceback in a restart loop, and an indexer of an older build ran on a newer schema unwarned)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
MIGRATE = "python -m indexer migrate --config FILE"


class MigrationError(RuntimeError):
    pass


def migration_files(directory: Path = SQL_DIR) -> list[tuple[int, Path]]:
    files = []
    for p in sorted(directory.glob("*.sql")):
        m = _NAME.fullmatch(p.name)
        if m is None:
            raise MigrationError(f"{p.name}: migration files must be named NNN_lowercase_name.sql")
        files.append((int(m.group(1)), p))
    versions = [v for v, _ in files]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {directory}")
    return files


@functools.cache
def _build_versions() -> frozenset[int]:
    return frozenset(v for v, _ in migration_files(SQL_DIR))


async def schema_problem(
    conn: asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record], directory: Path = SQL_DIR
) -> str | None:
    """Why the database's schema is not this build's (one line saying what to run), or None. Run on
    every /ready probe of the API and the keeper: the build's own sql/ is listed once per process."""
    expected = _build_versions() if directory == SQL_DIR else {v for v, _ in migration_files(directory)}
    if await conn.fetchval("SELECT to_regclass('public.schema_migrations')") is None:
        applied: set[int] = set()
    else:
        applied = {int(r["version"]) for r in await conn.fetch("SELECT version FROM public.schema_migrations")}
    newest = max(expected, default=0)
    unknown = sorted(applied - expected)
    if unknown:
        return (
            f"the database has migration {unknown[-1]:03d}, newer than this build (its newest is {newest:03d}):"
            " it was migrated by a newer build; run that build (or a newer one), not this one"
        )
    missing = sorted(expected - applied)
    if missing:
        return (
            f"the database lacks {len(missing)} migration(s) of this build ({missing[0]:03d}..{missing[-1]:03d}):"
            f" run `{MIGRATE}` first"
        )
    return None
