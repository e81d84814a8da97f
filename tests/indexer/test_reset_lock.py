"""`python -m indexer reset` beside a running indexer is refused, naming what to do: run beside the
writer, its batch in flight committed after the deletes, leaving raw rows without a checkpoint and a
re-index failing on their primary keys at every start. With no writer it resets as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from indexer import cli
from indexer.checkpoint import WRITER_LOCK_BASE
from indexer.service import EXIT_CONFIG, EXIT_OK
from tests.indexer.helpers import make_settings

pytestmark = [pytest.mark.pg]


async def test_reset_is_refused_while_the_writer_lock_is_held(
    db_dsn: str, deployment: dict[str, Any], tmp_path: Path
) -> None:
    settings = make_settings("http://127.0.0.1:1", deployment, db_dsn, tmp_path)
    chain = settings.chain.chain_id
    conn = await asyncpg.connect(db_dsn)
    await conn.execute(
        "INSERT INTO idx.checkpoints (chain_id, block_number, block_hash) VALUES ($1, 7, $2)", chain, b"\x01" * 32
    )
    writer = await asyncpg.connect(db_dsn)  # what a running indexer holds
    await writer.execute("SELECT pg_advisory_lock($1)", WRITER_LOCK_BASE + chain)
    assert await cli.reset(settings) == EXIT_CONFIG
    assert await conn.fetchval("SELECT count(*) FROM idx.checkpoints WHERE chain_id = $1", chain) == 1
    await writer.close()  # the indexer stopped
    assert await cli.reset(settings) == EXIT_OK
    assert await conn.fetchval("SELECT count(*) FROM idx.checkpoints WHERE chain_id = $1", chain) == 0
    await conn.close()
