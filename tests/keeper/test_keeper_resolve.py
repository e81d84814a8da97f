"""Resolution end to end on a real anvil and PostgreSQL: queue, price feed, overdue, re-checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper import jobs
from tests.keeper.kit import (
    ADMIN,
    KEEPER,
    ChainOps,
    bind_rule,
    fetch,
    harness,
    insert_markets,
    make_settings,
    queue,
)

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


async def test_queued_resolution_is_sent_exactly_once(ops: ChainOps, db_dsn: str, deployment_path: Path) -> None:
    """An operator-queued outcome is proposed once; later runs find it in the ledger and send nothing."""
    end = ops.now() + 100
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    qid = await queue(db_dsn, m, 1, reason="obvious", by="alice")
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        assert (await jobs.resolve(h.ctx))["sent"] == 0  # not ended yet: nothing
        ops.advance(200)
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        await h.tx.wait_idle(30, 0.1)
        assert (await jobs.resolve(h.ctx))["sent"] == 0
    assert ops.status(m)[:2] == (1, 1)  # proposed YES: final after the challenge window (the finalize job)
    assert len(ops.proposed_events(m)) == 1
    assert ops.resolved_events(m) == []
    txs = await fetch(db_dsn, "SELECT job_key, status, epoch, queue_id FROM keeper.txs")
    assert [(t["job_key"], t["status"], t["queue_id"]) for t in txs] == [(f"resolve:{m}", "confirmed", qid)]
    (q,) = await fetch(db_dsn, "SELECT status, requested_by, reason FROM keeper.resolution_queue")
    assert (q["status"], q["requested_by"], q["reason"]) == ("resolved", "alice", "obvious")


async def test_a_price_feed_rule_resolves_from_the_first_round_at_or_after_end_time(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """A round published in the market's last minute was public while the pool still traded at the old
    price (audit h1 F2: a risk-free buy of the side it made certain, +73 USDC on a 100 USDC pool). The
    first round at or after end time decides, one no trader could know; none is proposed before it,
    a later one never changes it, and the outcome is proposed once."""
    feed = ops.dep.price_feed
    assert feed is not None
    from keeper.abi import encode_call

    ops.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", 3_500 * 10**8))
    end = ops.now() + 100
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    conn_rows = await fetch(
        db_dsn,
        "INSERT INTO keeper.price_feed_rules (chain_id, market_id, feed, comparison, threshold, created_by)"
        " VALUES (31337, $1, $2, 'gte', $3, 'test') RETURNING market_id",
        m,
        bytes.fromhex(feed[2:]),
        3_400 * 10**8,
    )
    assert conn_rows
    ops.advance(end - 30 - ops.now())
    ops.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", 3_000 * 10**8))  # trading still open
    assert ops.now() < end
    ops.advance(200)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        assert (await jobs.resolve(h.ctx))["sent"] == 0  # no round since end time yet: nothing to decide
        assert ops.proposed_events(m) == []
        ops.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", 3_500 * 10**8))  # the first after end
        ops.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", 3_000 * 10**8))  # later: never decides
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        await h.tx.wait_idle(30, 0.1)
        assert (await jobs.resolve(h.ctx))["sent"] == 0
    assert ops.status(m)[:2] == (1, 1)
    assert len(ops.proposed_events(m)) == 1


async def test_a_first_round_the_walk_cannot_show_is_never_used(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """More rounds since end time than `feed_max_rounds_back`: the walk cannot reach the round before
    end time, so it cannot know which round was the first after it. Nothing is proposed; past grace
    the market is reported overdue (queue its outcome)."""
    feed = ops.dep.price_feed
    assert feed is not None
    from keeper.abi import encode_call

    end = ops.now() + 100
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    await bind_rule(db_dsn, m, feed, 3_400 * 10**8)
    ops.advance(200)
    for answer in (3_500, 3_000, 3_000, 3_000):
        ops.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", answer * 10**8))
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, feed_max_rounds_back=2, grace_period_s=10)
    async with harness(settings) as h:
        counts = await jobs.resolve(h.ctx)
    assert (counts["sent"], counts["overdue"]) == (0, 1)
    assert ops.proposed_events(m) == []
    (o,) = await fetch(db_dsn, "SELECT market_id, reason FROM keeper.overdue_markets")
    assert (o["market_id"], o["reason"]) == (m, "feed_unusable")


async def test_markets_on_one_feed_read_each_round_once_a_run(
    ops: ChainOps, db_dsn: str, deployment_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five markets bound to one feed, updated twice after their end: the run reads the feed's latest
    round once (in one batch with any other feed's) and walks back two rounds once, not five times each
    (15 calls before); every market resolves from the first round after its end."""
    feed = ops.dep.price_feed
    assert feed is not None
    from keeper.abi import encode_call

    ops.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", 3_000 * 10**8))  # before end: never decides
    end = ops.now() + 100
    markets = ops.create_markets(5, end)
    await insert_markets(db_dsn, markets, end)
    for m in markets:
        await bind_rule(db_dsn, m, feed, 3_400 * 10**8)
    ops.advance(200)
    for answer in (3_500, 2_900):  # the first round after end says YES; the later NO must not decide
        ops.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", answer * 10**8))
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        asked: list[str] = []
        call, batch = h.ctx.rpc.call, h.ctx.rpc.batch

        async def counting_call(method: str, *params: object) -> object:
            if method == "eth_call" and params[0]["to"].lower() == feed.lower():  # type: ignore[index]
                asked.append(params[0]["data"][:10])  # type: ignore[index]
            return await call(method, *params)

        async def counting_batch(calls: list[tuple[str, list[object]]], node: int | None = None) -> list[object]:
            for method, params in calls:
                if method == "eth_call" and params[0]["to"].lower() == feed.lower():  # type: ignore[index]
                    asked.append(params[0]["data"][:10])  # type: ignore[index]
            return await batch(calls, node=node)

        monkeypatch.setattr(h.ctx.rpc, "call", counting_call)
        monkeypatch.setattr(h.ctx.rpc, "batch", counting_batch)
        assert (await jobs.resolve(h.ctx))["sent"] == 5
        latest = "0x" + encode_call("MockPriceFeed", "latestRoundData")[:4].hex()
        by_round = "0x" + encode_call("MockPriceFeed", "getRoundData", 1)[:4].hex()
        assert sorted(asked) == sorted([latest, by_round, by_round])
        await h.tx.wait_idle(30, 0.1)
    assert all(ops.status(m)[:2] == (1, 1) for m in markets)  # YES: 3,500 was the first round after end


async def test_market_without_source_is_reported_overdue_never_guessed(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """Past end + grace with no queue entry and no rule: reported (table, metric), no transaction."""
    end = ops.now() + 50
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    ops.advance(100)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, grace_period_s=10)
    nonce = ops.keeper_nonce()
    async with harness(settings) as h:
        counts = await jobs.resolve(h.ctx)
        assert counts["overdue"] == 1
        assert counts["sent"] == 0
        assert h.metrics.overdue._value.get() == 1
    assert ops.keeper_nonce() == nonce
    rows = await fetch(db_dsn, "SELECT market_id, reason FROM keeper.overdue_markets")
    assert [(r["market_id"], r["reason"]) for r in rows] == [(m, "no_outcome_source")]
    assert await fetch(db_dsn, "SELECT 1 FROM keeper.txs") == []


async def test_market_resolved_elsewhere_is_skipped_after_the_chain_check(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """The database says open, the contract says proposed (by another resolver): skip, record why, send nothing;
    the operator's entry is closed once that proposal is final (before, a reorg may remove it)."""
    end = ops.now() + 50
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    ops.advance(100)
    from keeper.abi import encode_call

    ops.send(KEEPER, ops.dep.opinion_market, encode_call("OpinionMarket", "proposeOutcome", m, 0))
    qid = await queue(db_dsn, m, 1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    nonce = ops.keeper_nonce()
    async with harness(settings) as h:
        counts = await jobs.resolve(h.ctx)
        assert counts["sent"] == 0
        assert counts["skipped"] == 1
        (q,) = await fetch(db_dsn, "SELECT id, status FROM keeper.resolution_queue")
        assert (q["id"], q["status"]) == (qid, "queued")  # the proposal is one block deep
        ops.anvil.mine(80)  # now final (anvil: finalized = head - 64)
        await jobs.resolve(h.ctx)
    assert ops.keeper_nonce() == nonce
    (q,) = await fetch(db_dsn, "SELECT id, status, status_reason FROM keeper.resolution_queue")
    assert (q["id"], q["status"], q["status_reason"]) == (qid, "skipped", "already_proposed")
    decisions = await fetch(db_dsn, "SELECT job_key, action, reason FROM keeper.decisions")
    seen = {(d["job_key"], d["action"], d["reason"]) for d in decisions}
    assert seen == {(f"resolve:{m}", "skipped", "already_proposed")}


async def test_dry_run_plans_and_sends_nothing(ops: ChainOps, db_dsn: str, deployment_path: Path) -> None:
    """Dry run: the plan names the market and outcome; no ledger row, no transaction, no queue change."""
    end = ops.now() + 50
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    await queue(db_dsn, m, 2)
    ops.advance(100)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, dry_run=True)
    nonce = ops.keeper_nonce()
    async with harness(settings, lead=False, dry_run=True) as h:
        await jobs.resolve(h.ctx)
        plans = h.plans
    assert [(p["market_id"], p["outcome"]) for p in plans] == [(m, "invalid")]
    assert ops.keeper_nonce() == nonce
    assert await fetch(db_dsn, "SELECT 1 FROM keeper.txs") == []
    assert [r["status"] for r in await fetch(db_dsn, "SELECT status FROM keeper.resolution_queue")] == ["queued"]
    assert ops.status(m)[0] == 0


async def test_queue_entry_for_a_market_already_in_flight_is_skipped_not_sent(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """A second operator entry for a market whose resolution is already in the ledger is marked skipped."""
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    await queue(db_dsn, m, 1)
    ops.advance(60)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        await h.tx.wait_idle(30, 0.1)
        late = await queue(db_dsn, m, 0, reason="changed my mind")
        assert (await jobs.resolve(h.ctx))["sent"] == 0
    rows = await fetch(db_dsn, "SELECT id, status, status_reason FROM keeper.resolution_queue ORDER BY id")
    assert [(r["status"], r["status_reason"]) for r in rows] == [("resolved", None), ("skipped", "already_in_ledger")]
    assert rows[1]["id"] == late
    assert ops.status(m)[:2] == (1, 1)


NOT_A_FEED = "0x" + "fe" * 20  # given code that returns nothing (as a contract with a non-reverting fallback)


async def test_a_rule_bound_to_a_non_feed_contract_fails_its_market_alone(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """A rule whose 'feed' answers latestRoundData with bytes that are no round fails that market (an
    item failure naming the market and the feed); the other market's rule still proposes."""
    from keeper.abi import encode_call

    feed = ops.dep.price_feed
    assert feed is not None
    ops.anvil.call("anvil_setCode", NOT_A_FEED, "0x00")
    ops.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", 3_500 * 10**8))
    end = ops.now() + 100
    bad, good = ops.create_markets(2, end)
    await insert_markets(db_dsn, [bad, good], end)
    for m, f in ((bad, NOT_A_FEED), (good, feed)):
        await bind_rule(db_dsn, m, f, 3_400 * 10**8)
    ops.advance(200)
    ops.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", 3_500 * 10**8))  # the round after end
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        counts = await jobs.resolve(h.ctx)
        assert (counts["sent"], counts["failed"]) == (1, 1)
        assert h.metrics.item_failures.labels(job="resolve", stage="check")._value.get() == 1
        await h.tx.wait_idle(30, 0.1)
    assert ops.status(good)[:2] == (1, 1)
    assert ops.status(bad)[0] == 0
    (d,) = await fetch(db_dsn, "SELECT job_key, reason FROM keeper.decisions WHERE action = 'failed'")
    assert d["job_key"] == f"resolve:{bad}"
    assert f"market {bad}: feed {NOT_A_FEED}" in d["reason"]
    assert "not an AggregatorV3 round" in d["reason"]
