"""Least privilege in PostgreSQL (review h4): the read-only roles cannot take the writers' advisory
locks, and analysts' sessions are bounded."""

from __future__ import annotations

import asyncpg
import pytest

from core.outbox import OUTBOX_LOCK
from indexer.checkpoint import WRITER_LOCK_BASE
from indexer.migrate import MIGRATION_LOCK
from keeper.leader import lock_key

pytestmark = [pytest.mark.pg]

LOCKS = [
    ("migration lock", MIGRATION_LOCK),
    ("outbox lock (every indexer batch and keeper notification)", OUTBOX_LOCK),
    ("indexer writer lock of chain 31337", WRITER_LOCK_BASE + 31337),
    ("keeper leader lock of chain 31337", lock_key(31337)),
]


@pytest.mark.parametrize("role", ["analyst", "api"])
@pytest.mark.parametrize(("key_name", "key"), LOCKS)
async def test_read_only_roles_cannot_take_the_writers_advisory_locks(
    db_dsn: str, role: str, key_name: str, key: int
) -> None:
    """Before: `SELECT pg_advisory_lock(<key>)` by an analyst or the API's role (the keys are constants in
    the source) stalled every indexer commit, kept every keeper a standby, or hung migrations."""
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute(f"SET ROLE {role}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
        await conn.execute("RESET ROLE")
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)  # the writers' login still can
        await conn.execute("SELECT pg_advisory_unlock_all()")
    finally:
        await conn.close()


async def test_analyst_sessions_are_bounded(db_dsn: str) -> None:
    """Before: no statement timeout, no idle-in-transaction timeout and no connection limit, so a
    forgotten `BEGIN; SELECT … FROM markets` held locks (migrations gave up) and vacuum back, a cross
    join ran for ever, and analysts could take every connection the writers need."""
    conn = await asyncpg.connect(db_dsn)
    try:
        row = await conn.fetchrow("SELECT rolconfig, rolconnlimit FROM pg_roles WHERE rolname = 'analyst'")
        assert row is not None
        settings = set(row["rolconfig"] or [])
        assert {"statement_timeout=60s", "idle_in_transaction_session_timeout=60s"} <= settings, settings
        assert row["rolconnlimit"] == 20
    finally:
        await conn.close()


async def test_the_superusers_statement_in_the_docs_closes_the_locks(db_dsn: str) -> None:
    """docs/operations.md gives the statement a superuser runs when the migrations ran as another role:
    run here as written (with this test's writer role), then the read-only roles are refused."""
    from tests.chain import ROOT

    text = (ROOT / "docs" / "operations.md").read_text()
    line = next(x for x in text.splitlines() if x.strip().startswith('psql "$DSN_AS_SUPERUSER" -c'))
    sql = line.split(' -c "', 1)[1].rsplit('"', 1)[0].replace("\\$", "$").replace("<writer role>", "guesslyfe")
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute("GRANT EXECUTE ON FUNCTION pg_try_advisory_lock(bigint) TO PUBLIC")  # as if never closed
        await conn.execute(sql)
        await conn.execute("SET ROLE analyst")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT pg_try_advisory_lock($1)", OUTBOX_LOCK)
    finally:
        await conn.close()


async def test_view_prices_are_the_apis_exact_truncation(db_dsn: str) -> None:
    """Review h4: trunc(a / b, 6) rounds the numeric quotient first (~20 digits): 0.390243 where the API
    (indexer.fold.ratio6, integer division) says 0.390242. The views use public.ratio6 now."""
    from decimal import Decimal

    from indexer.fold import ratio6

    cases = [(390243000042188, 609757000065919 + 390243000042188), (1, 3), (2, 3), (10**30 - 1, 10**30), (0, 7)]
    conn = await asyncpg.connect(db_dsn)
    try:
        for num, den in cases:
            assert await conn.fetchval("SELECT public.ratio6($1, $2)", Decimal(num), Decimal(den)) == Decimal(
                ratio6(num, den)
            )
        for view, uses in (("markets", 2), ("trades", 2)):
            text = await conn.fetchval("SELECT pg_get_viewdef($1::regclass)", f"public.{view}")
            assert text.count("ratio6(") == uses, text
            assert "trunc((" not in text
    finally:
        await conn.close()


async def test_an_api_login_in_role_api_can_do_no_more_than_api(db_dsn: str) -> None:
    """docs/operations.md: the API's production login is `CREATE ROLE gl_api LOGIN PASSWORD '…' IN ROLE
    api`; leaving the role it was SET to (SET ROLE NONE) then gains nothing."""
    from tests.conftest import WORKER

    login = f"gl_api_{WORKER}"
    admin = await asyncpg.connect(db_dsn)
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {login}")
        await admin.execute(f"CREATE ROLE {login} LOGIN PASSWORD 'x' IN ROLE api")
        conn = await asyncpg.connect(db_dsn.replace("guesslyfe@", f"{login}:x@"), server_settings={"role": "api"})
        try:
            await conn.fetchval("SELECT count(*) FROM idx.markets")  # what api reads: no error
            await conn.execute("SET ROLE NONE")
            assert await conn.fetchval("SELECT current_user") == login
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval("SELECT count(*) FROM keeper.tx_attempts")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("INSERT INTO idx.checkpoints (chain_id) VALUES (1)")
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {login}")
        await admin.close()
