"""Bad operator input is refused where it enters (the CLI, checked against the chain) and by the
database (constraints); a poison row written around both is marked failed and skipped while the
good entry behind it resolves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from web3 import Web3

from core import resolution as R
from keeper import jobs
from keeper.abi import encode_call
from keeper.cli import main
from tests.keeper.kit import (
    ADMIN,
    KEEPER,
    ChainOps,
    fetch,
    harness,
    insert_markets,
    make_settings,
    queue,
    run_keeper,
    write_config,
)

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-5, "must be >= 0"),
        ("-5", "must be >= 0"),
        ("abc", "whole number"),
        (True, "whole number"),
        (2**63, "must be < 2"),
    ],
)
def test_market_id_parse_refuses_with_the_input_named(value: object, message: str) -> None:
    """Negative, non-numeric, boolean and oversized market ids are refused, naming the field."""
    with pytest.raises(R.RequestError, match=message) as err:
        R.parse_market_id(value, "MARKET_ID")
    assert err.value.field == "MARKET_ID"


def test_request_fields_parse() -> None:
    """Outcome names, reasons, feed addresses, comparisons and thresholds are checked and normalised."""
    assert R.parse_market_id(" 7 ") == 7
    assert R.parse_outcome("YES") == 1
    with pytest.raises(R.RequestError, match="yes, no, invalid"):
        R.parse_outcome("maybe")
    with pytest.raises(R.RequestError, match="non-blank"):
        R.parse_text("   ", "--reason")
    with pytest.raises(R.RequestError, match="NUL"):
        R.parse_text("a\x00b", "reason")
    with pytest.raises(R.RequestError, match="at most 500"):
        R.parse_text("x" * 501, "--reason")
    with pytest.raises(R.RequestError, match="20-byte"):
        R.parse_address("0x1234", "--feed")
    with pytest.raises(R.RequestError, match="gt, gte"):
        R.parse_comparison("eq")
    assert R.parse_threshold("-12") == -12
    with pytest.raises(R.RequestError, match="int256"):
        R.parse_threshold(2**255)


def test_market_state_checks() -> None:
    """A market must exist, be unresolved and past its end to queue; exist and be unresolved to bind."""
    with pytest.raises(R.RequestError, match="does not exist") as err:
        R.check_due(4, None, 100, "on chain")
    assert err.value.kind == "not_found"
    with pytest.raises(R.RequestError, match="has not ended") as err:
        R.check_due(4, R.MarketFacts(4, 200, False), 100, "on chain")
    assert err.value.kind == "conflict"
    with pytest.raises(R.RequestError, match="already resolved"):
        R.check_due(4, R.MarketFacts(4, 50, True), 100, "on chain")
    R.check_due(4, R.MarketFacts(4, 100, False), 100, "on chain")
    R.check_bindable(4, R.MarketFacts(4, 200, False), "on chain")


def test_cli_refuses_bad_resolutions_and_records_the_good_one(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path
) -> None:
    """`python -m keeper resolve` refuses a negative id, a non-number, a market not on chain, a market not yet
    ended and a wrong outcome (exit 2, a message naming the input); nothing is recorded for them."""
    (ended,) = ops.create_markets(1, ops.now() + 30)
    ops.advance(60)
    (later,) = ops.create_markets(1, ops.now() + 10_000)
    cfg = write_config(tmp_path / "k.toml", ops.anvil.url, db_dsn, deployment_path)

    def resolve(*args: str) -> tuple[int, str]:
        out = run_keeper(cfg, "resolve", *args)
        return out.returncode, out.stderr + out.stdout

    cases = [
        (("-5", "yes", "--reason", "typo"), "MARKET_ID: must be >= 0"),
        (("abc", "yes", "--reason", "typo"), "MARKET_ID: must be a whole number"),
        (("999999", "yes", "--reason", "r"), "market 999999 does not exist (on chain)"),
        ((str(later), "yes", "--reason", "r"), f"market {later} has not ended"),
        ((str(ended), "maybe", "--reason", "r"), "OUTCOME: must be one of yes, no, invalid"),
        ((str(ended), "yes", "--reason", "  "), "--reason: is required"),
    ]
    for args, message in cases:
        code, text = resolve(*args)
        assert code == 2, (args, text)
        assert message in text, (args, text)
        assert text.startswith("refused: ")
    assert asyncio.run(fetch(db_dsn, "SELECT 1 FROM keeper.resolution_queue")) == []
    code, text = resolve(str(ended), "no", "--reason", "announced", "--by", "carol")
    assert code == 0, text
    (row,) = asyncio.run(fetch(db_dsn, "SELECT market_id, outcome, reason, requested_by FROM keeper.resolution_queue"))
    assert tuple(row) == (ended, 0, "announced", "carol")
    code, text = resolve(str(ended), "yes", "--reason", "again")
    assert code == 2
    assert "already has an active queue entry" in text


async def test_database_refuses_rows_the_cli_would_refuse(db_dsn: str) -> None:
    """A negative market id, a blank reason or requester, a malformed feed address, an unknown job:
    CHECK violations."""
    conn = await asyncpg.connect(db_dsn)
    try:
        bad = [
            (
                "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by)"
                " VALUES (31337, -5, 1, 'typo', 'me')"
            ),
            (
                "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by)"
                " VALUES (31337, 5, 1, '  ', 'me')"
            ),
            (
                "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by)"
                " VALUES (31337, 5, 1, 'r', '')"
            ),
            (
                "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by)"
                " VALUES (31337, 5, 3, 'r', 'me')"
            ),
            (
                "INSERT INTO keeper.price_feed_rules (chain_id, market_id, feed, comparison, threshold, created_by)"
                " VALUES (31337, 5, '\\x1234', 'gt', 1, 'me')"
            ),
            (
                "INSERT INTO keeper.price_feed_rules (chain_id, market_id, feed, comparison, threshold, created_by)"
                " VALUES (31337, -1, decode(repeat('ab', 20), 'hex'), 'gt', 1, 'me')"
            ),
            "INSERT INTO keeper.job_requests (chain_id, job, requested_by) VALUES (31337, 'resolv', 'me')",
        ]
        for sql in bad:
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(sql)
        for job in ("resolve", "finalize", "expire"):  # each resolution step can be asked for on its own
            await conn.execute(
                "INSERT INTO keeper.job_requests (chain_id, job, requested_by) VALUES (31337, $1, 'me')", job
            )
    finally:
        await conn.close()


async def test_poison_row_is_failed_and_skipped_while_the_good_one_resolves(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """A queued -5 (written around the constraint, as before migration 050) cannot be encoded: it is
    marked failed with its error and counted; an unknown id is skipped; the good entry queued after
    both resolves in the same run, and later runs carry on."""
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    ops.advance(60)
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute("ALTER TABLE keeper.resolution_queue DROP CONSTRAINT resolution_queue_market_id")
        poison = await queue(db_dsn, -5, 1, reason="typo")
        unknown = await queue(db_dsn, 2**63 - 1, 1, reason="no such market")
        good = await queue(db_dsn, m, 1, reason="announced")
    finally:
        await conn.close()
    assert poison < unknown < good
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        counts = await jobs.resolve(h.ctx)
        assert counts["sent"] == 1
        assert counts["failed"] == 1
        await h.tx.wait_idle(30, 0.1)
        assert h.metrics.item_failures.labels(job="resolve", stage="encode")._value.get() == 1
        again = await jobs.resolve(h.ctx)
        assert again["sent"] == 0
        assert again["failed"] == 0
    rows = {r["id"]: r for r in await fetch(db_dsn, "SELECT id, status, status_reason FROM keeper.resolution_queue")}
    assert rows[poison]["status"] == "failed"
    assert rows[poison]["status_reason"].startswith("encode: ")
    assert (rows[unknown]["status"], rows[unknown]["status_reason"]) == ("skipped", "MarketNotFound")
    assert rows[good]["status"] == "resolved"
    assert ops.status(m)[:2] == (1, 1)
    (d,) = await fetch(db_dsn, "SELECT job_key, reason FROM keeper.decisions WHERE action = 'failed'")
    assert d["job_key"] == "resolve:-5"


async def test_entry_the_contract_refuses_in_simulation_is_failed_not_retried(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """A queued resolution whose simulation reverts with a contract error (here: the keeper lost its
    resolver role) is marked failed with the decoded error and counted; nothing is sent or retried."""
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    ops.advance(60)
    qid = await queue(db_dsn, m, 1)
    role = Web3.keccak(text="RESOLVER_ROLE")
    assert (
        ops.w3.eth.call(
            {
                "to": Web3.to_checksum_address(ops.dep.opinion_market),
                "data": encode_call("OpinionMarket", "hasRole", role, KEEPER.address),
            }
        )[-1]
        == 1
    )
    ops.send(ADMIN, ops.dep.opinion_market, encode_call("OpinionMarket", "revokeRole", role, KEEPER.address))
    nonce = ops.keeper_nonce()
    async with harness(make_settings(ops.anvil.url, db_dsn, deployment_path)) as h:
        counts = await jobs.resolve(h.ctx)
        assert (counts["sent"], counts["failed"]) == (0, 1)
        assert h.metrics.item_failures.labels(job="resolve", stage="simulate")._value.get() == 1
        assert (await jobs.resolve(h.ctx))["failed"] == 0  # not queued any more: not retried
    assert ops.keeper_nonce() == nonce
    (q,) = await fetch(db_dsn, "SELECT id, status, status_reason FROM keeper.resolution_queue")
    assert (q["id"], q["status"]) == (qid, "failed")
    assert q["status_reason"] == "simulate: simulation reverted: AccessControlUnauthorizedAccount"


def test_cli_rule_checks_the_market_and_the_feed_on_chain(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path
) -> None:
    """`keeper rule` refuses a feed address with no contract, a contract whose latestRoundData is no
    AggregatorV3 round, and an unknown market; a good rule is recorded with who and why."""
    feed = ops.dep.price_feed
    assert feed is not None
    (m,) = ops.create_markets(1, ops.now() + 10_000)
    cfg = write_config(tmp_path / "k.toml", ops.anvil.url, db_dsn, deployment_path)
    common = ("--op", "gte", "--threshold", "300000000000", "--reason", "ETH above $3,000", "--by", "dana")
    nowhere = run_keeper(cfg, "rule", str(m), "--feed", "0x" + "12" * 20, *common)
    assert nowhere.returncode == 2
    assert "--feed: no contract at 0x1212" in nowhere.stderr
    # a contract that is no feed: one whose fallback answers nothing, one that reverts latestRoundData
    ops.anvil.call("anvil_setCode", "0x" + "fe" * 20, "0x00")
    silent = run_keeper(cfg, "rule", str(m), "--feed", "0x" + "fe" * 20, *common)
    assert silent.returncode == 2
    assert "--feed: 0xfefe" in silent.stderr
    assert "answered 0 bytes that are not an AggregatorV3 round" in silent.stderr
    token = run_keeper(cfg, "rule", str(m), "--feed", ops.dep.usdc, *common)
    assert token.returncode == 2
    assert "latestRoundData() reverts" in token.stderr
    unknown = run_keeper(cfg, "rule", "999999", "--feed", feed, *common)
    assert unknown.returncode == 2
    assert "market 999999 does not exist" in unknown.stderr
    assert asyncio.run(fetch(db_dsn, "SELECT 1 FROM keeper.price_feed_rules")) == []
    ok = run_keeper(cfg, "rule", str(m), "--feed", feed, *common)
    assert ok.returncode == 0, ok.stderr
    (row,) = asyncio.run(
        fetch(db_dsn, "SELECT market_id, comparison, threshold, created_by, reason FROM keeper.price_feed_rules")
    )
    assert tuple(row) == (m, "gte", 300_000_000_000, "dana", "ETH above $3,000")


async def test_after_a_resolution_reverts_on_chain_an_operators_new_entry_is_sent(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """The keeper's proposal passes simulation, then reverts on chain (its resolver role is revoked in
    the same block, ahead of it). The reverted transaction did nothing: the automatic job does not
    retry it, but the operator's new queue entry is sent — it used to be accepted, then skipped as
    already_in_ledger for good, and the market would have expired INVALID instead."""
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    ops.advance(60)
    await queue(db_dsn, m, 1)
    role = Web3.keccak(text="RESOLVER_ROLE")
    om = ops.dep.opinion_market
    async with harness(make_settings(ops.anvil.url, db_dsn, deployment_path)) as h:
        ops.anvil.call("evm_setAutomine", False)
        try:
            assert (await jobs.resolve(h.ctx))["sent"] == 1  # simulated fine, now in the mempool
            ops.send(
                ADMIN, om, encode_call("OpinionMarket", "revokeRole", role, KEEPER.address), wait=False, max_fee=10**12
            )
            ops.anvil.mine(1)
        finally:
            ops.anvil.call("evm_setAutomine", True)
        ops.send(ADMIN, om, encode_call("OpinionMarket", "grantRole", role, KEEPER.address))
        await h.tx.wait_idle(30, 0.1)
        (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs WHERE job_key = $1", f"resolve:{m}")
        assert t["status"] == "reverted"
        assert ops.status(m)[0] == 0  # still open on chain
        assert (await jobs.resolve(h.ctx))["sent"] == 0  # no automatic retry of a revert
        qid = await queue(db_dsn, m, 2, reason="after the revert", by="alice")
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        await h.tx.wait_idle(30, 0.1)
    assert ops.status(m)[:2] == (1, 2)  # proposed NO, the operator's outcome
    txs = await fetch(db_dsn, "SELECT status, queue_id FROM keeper.txs WHERE job_key = $1 ORDER BY id", f"resolve:{m}")
    assert [(t["status"], t["queue_id"]) for t in txs][-1] == ("confirmed", qid)
    (q,) = await fetch(db_dsn, "SELECT status FROM keeper.resolution_queue WHERE id = $1", qid)
    assert q["status"] == "resolved"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("txs", "--limit", "-1"),
            "argument --limit: must be a whole number from 1 to 10000, got '-1' (e.g. --limit 50)",
        ),
        (("txs", "--limit", "0"), "argument --limit: must be a whole number from 1 to 10000, got '0'"),
        (("txs", "--limit", "lots"), "argument --limit: must be a whole number from 1 to 10000, got 'lots'"),
        (("run", "--once", "--wait", "-5"), "argument --wait: must be a number of seconds from 0 to 86400, got '-5'"),
        (("run", "--once", "--wait", "nan"), "argument --wait: must be a number of seconds from 0 to 86400"),
        (("run", "--once", "--wait", "inf"), "argument --wait: must be a number of seconds from 0 to 86400"),
        (("run", "--once", "--by", "   "), "refused: --by: is required: a non-blank text"),
        (("run", "--once", "--by", "x" * 201), "refused: --by: must be at most 200 characters"),
        (("run", "--once", "--jobs", ","), "refused: --jobs: unknown or no job"),
    ],
)
def test_cli_arguments_are_refused_with_exit_2_before_anything_runs(
    args: tuple[str, ...],
    message: str,
    db_dsn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every CLI argument is checked where it enters: a refusal names the argument, what was expected
    and an example, exits 2 and reaches neither the database nor the chain (`txs --limit -1` was a
    raw PostgreSQL traceback)."""
    # structlog would keep writing to this test's captured stream after it closes (the later tests' logs)
    monkeypatch.setattr("keeper.cli.configure_logging", lambda: None)
    cfg = write_config(tmp_path / "keeper.toml", "http://127.0.0.1:9", db_dsn, tmp_path / "none.json")
    try:
        code = main([*args, "--config", str(cfg)])
    except SystemExit as exc:  # argparse's own refusal (usage + message)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_config_that_cannot_be_read_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --config that is a directory names the file and exits 2 (it was an IsADirectoryError traceback)."""
    assert main(["status", "--config", str(tmp_path)]) == 2
    assert f"config file {tmp_path} cannot be read (Is a directory)" in capsys.readouterr().err
