"""Migrations against a live database (indexer/migrate.py): a migration that alters a table takes
its locks within a bounded wait or rolls back and tries again, so readers never queue behind it for
long; when the table stays in use it fails with a clear error and applies nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from indexer.migrate import MigrationError, apply_migrations

pytestmark = [pytest.mark.pg]


async def test_a_migration_waits_for_readers_without_making_them_wait(db_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "999_probe.sql").write_text("ALTER TABLE idx.markets ADD COLUMN probe int;")
    analyst = await asyncpg.connect(db_dsn)
    migrator = await asyncpg.connect(db_dsn)
    reader = await asyncpg.connect(db_dsn)
    try:
        tx = analyst.transaction()
        await tx.start()
        await analyst.fetch("SELECT count(*) FROM idx.markets")  # ACCESS SHARE until the end of tx

        with pytest.raises(MigrationError, match=r"999_probe\.sql: its tables stayed in use .*nothing was applied"):
            await apply_migrations(migrator, tmp_path, lock_wait="100ms", tries=2)
        assert await migrator.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 999") == 0

        # while it tries again, a reader arriving behind it still gets its answer (it waits one try at most)
        migrating = asyncio.create_task(apply_migrations(migrator, tmp_path, lock_wait="300ms", tries=20))
        await asyncio.sleep(0.1)
        for _ in range(3):
            assert await asyncio.wait_for(reader.fetchval("SELECT count(*) FROM idx.markets"), 30) == 0
        assert not migrating.done()
        await tx.commit()  # the analyst is done: the next try takes the lock
        assert await asyncio.wait_for(migrating, 60) == ["999_probe.sql"]
        assert await reader.fetchval("SELECT count(*) FROM information_schema.columns WHERE column_name = 'probe'") == 1
    finally:
        for c in (analyst, migrator, reader):
            await c.close()
