"""Index simulated traffic from a real anvil and reconcile every derived row with the contracts'
view functions."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from core.contracts import load_abi
from indexer import bulk, write
from indexer import fold as F
from tests.indexer.helpers import (
    FAR,
    REORG_WALLETS,
    Node,
    buy_request,
    dump,
    fetch,
    index_to_head,
    make_settings,
    open_market,
    sim,
)

pytestmark = [pytest.mark.anvil, pytest.mark.pg]


def reconcile(w3: Web3, deployment: dict[str, Any], dsn: str) -> dict[str, int]:
    """Asserts markets, positions, creators, holdings and dividends equal the contracts' views."""
    om = w3.eth.contract(address=deployment["contracts"]["OpinionMarket"], abi=load_abi("OpinionMarket"))
    cs = w3.eth.contract(address=deployment["contracts"]["CreatorShares"], abi=load_abi("CreatorShares"))
    counts = {"markets": 0, "positions": 0, "creators": 0, "holdings": 0}
    assert om.functions.marketCount().call() == len(fetch(dsn, "SELECT 1 FROM idx.markets"))
    for m in fetch(dsn, "SELECT * FROM idx.markets"):
        creator, end_time, yes_r, no_r, status, outcome, withdrawn, proposed, challenge_ends = om.functions.getMarket(
            m["market_id"]
        ).call()
        assert (yes_r, no_r) == (int(m["yes_reserve"]), int(m["no_reserve"]))
        assert creator.lower() == "0x" + m["creator"].hex()
        assert end_time == int(m["end_time"].timestamp())
        assert ("open", "proposed", "disputed", "resolved")[status] == m["status"]
        assert (status == 3) == m["resolved"]
        if status == 3:
            assert outcome == m["outcome"]
        indexed_ends = None if m["challenge_ends"] is None else int(m["challenge_ends"].timestamp())
        assert (challenge_ends or None) == indexed_ends  # 0 on chain: never proposed
        if challenge_ends:
            assert proposed == m["proposed_outcome"]
        assert withdrawn == (m["liquidity_withdrawn"] is not None)
        counts["markets"] += 1
    for p in fetch(dsn, "SELECT * FROM idx.positions"):
        holder = Web3.to_checksum_address(p["holder"])
        yes, no = om.functions.positionOf(p["market_id"], holder).call()
        assert (yes, no) == (int(p["yes_shares"]), int(p["no_shares"])), p
        counts["positions"] += 1
    for c in fetch(dsn, "SELECT * FROM idx.creators"):
        creator = Web3.to_checksum_address(c["creator"])
        assert cs.functions.supplyOf(creator).call() == int(c["supply"])
        assert cs.functions.accPerShare(creator).call() == int(c["acc_per_share"])
        pool, market_fees = cs.functions.pendingPool(creator).call()
        pending_market = int(c["market_fees_accrued"]) - int(c["market_fees_folded"])
        assert (pool, market_fees) == (int(c["pool"]), pending_market), c
        assert cs.functions.marketFeesFolded(creator).call() == int(c["market_fees_folded"])
        assert cs.functions.creatorFeesOf(creator).call() == int(c["creator_fees"])
        # the warm-up's counters: dividendStream's earning supply is supply less the pending shares
        assert cs.functions.dividendStream(creator).call()[4] == int(c["supply"]) - int(c["pending_supply"]), c
        holders = fetch(
            dsn, "SELECT count(*) AS n FROM idx.share_holdings WHERE creator = $1 AND shares > 0", c["creator"]
        )[0]["n"]
        assert holders == c["holder_count"]
        counts["creators"] += 1
    for h in fetch(
        dsn,
        "SELECT h.*, c.acc_per_share AS acc FROM idx.share_holdings h JOIN idx.creators c USING (chain_id, creator)",
    ):
        creator, holder = Web3.to_checksum_address(h["creator"]), Web3.to_checksum_address(h["holder"])
        assert cs.functions.sharesOf(creator, holder).call() == int(h["shares"])
        assert cs.functions.lockedUntil(creator, holder).call() == int(h["locked_until"])
        row = F.HoldingRow(*(h[f] if f in ("creator", "holder") or h[f] is None else int(h[f]) for f in FIELDS))
        assert cs.functions.claimableDividends(creator, holder).call() == F.claimable(row, int(h["acc"])), h
        # lots the indexer still holds: marked ones (a fold passed their 00:00) earn, unmarked ones are pending
        earning, old, new, since = cs.functions.warmupOf(creator, holder).call()
        unmarked = [n for n, a in ((row.pend_old, row.pend_old_acc), (row.pend_new, row.pend_new_acc)) if a is None]
        assert earning + old + new == row.shares
        assert old + new <= sum(unmarked)  # warmupOf also counts lots whose 00:00 passed before any fold
        if old or new:
            assert since == row.earns_from
        counts["holdings"] += 1
    # The analyst view computes the same claimable amount.
    for v in fetch(dsn, "SELECT creator, holder, claimable_dividends FROM public.share_holdings"):
        c, h = Web3.to_checksum_address(v["creator"]), Web3.to_checksum_address(v["holder"])
        assert int(v["claimable_dividends"] * 10**6) == cs.functions.claimableDividends(c, h).call()
    return counts


FIELDS = [f.name for f in dataclasses.fields(F.HoldingRow)]


def distribute_all(node: Node) -> None:
    """The keeper's job, done here: distribute dividends for every creator with supply."""
    cs = node.w3.eth.contract(address=node.deployment["contracts"]["CreatorShares"], abi=load_abi("CreatorShares"))
    keeper = node.w3.eth.accounts[1]
    node.anvil.call("evm_increaseTime", 86_400)  # a day: every pool vested
    for i in range(2, 14):
        creator = node.w3.eth.accounts[i]
        if cs.functions.supplyOf(creator).call() > 0:
            try:
                cs.functions.distributeDividends(creator).call({"from": keeper})
            except Exception:
                continue
            tx = cs.functions.distributeDividends(creator).transact({"from": keeper})
            node.w3.eth.wait_for_transaction_receipt(tx)


def test_simulated_traffic_reconciles_with_contract_views(node: Node, db_dsn: str, tmp_path: Path) -> None:
    """After simulated trading, resolutions, distributions and claims, every derived row equals the views."""
    sim(node.url, node.deployment, seed=7, max_events=150, resolve=True)
    distribute_all(node)
    sim(node.url, node.deployment, seed=8, max_events=60, resolve=True)
    settings = make_settings(node.url, node.deployment, db_dsn, tmp_path, initial_span=7, concurrency=3)
    assert index_to_head(settings) == 0
    counts = reconcile(node.w3, node.deployment, db_dsn)
    assert counts["markets"] > 0
    assert counts["positions"] > 0
    assert counts["holdings"] > 0
    kinds = {r["kind"] for r in fetch(db_dsn, "SELECT DISTINCT kind FROM idx.notifications")}
    assert "dividends_distributed" in kinds
    head = node.anvil.head()
    cp = fetch(db_dsn, "SELECT block_number FROM idx.checkpoints")[0]["block_number"]
    assert cp == head


@pytest.mark.parametrize("small_rows", [bulk.SMALL_ROWS, 0], ids=["as_configured", "bulk_paths_only"])
def test_index_twice_in_pieces_equals_one_pass(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_rows: int
) -> None:
    """Indexing while traffic continues (several runs, tiny ranges) equals one pass over the final chain.
    With small_rows 0 every write takes the backfill's bulk paths (COPY, staged updates at a ctid,
    staged upserts of the rows the previous pipelined batch changed), which these small chains
    would otherwise never reach."""
    monkeypatch.setattr(bulk, "SMALL_ROWS", small_rows)
    settings = make_settings(node.url, node.deployment, db_dsn, tmp_path, initial_span=3, max_span=5)
    for seed in (1, 2, 3):
        sim(node.url, node.deployment, seed=seed, max_events=40, resolve=True)
        assert index_to_head(settings) == 0
    other = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, other, tmp_path)) == 0
    got, want = dump(db_dsn), dump(other)
    for table in want:
        assert got[table] == want[table], table
    reconcile(node.w3, node.deployment, db_dsn)


@pytest.mark.parametrize(
    ("small_rows", "first"),
    [(bulk.SMALL_ROWS, "reader"), (0, "writer")],
    ids=["array_writes-read_before_commit", "bulk_writes-read_after_commit"],
)
def test_blind_positions_equal_positions_read_first(
    node: Node,
    db_dsn: str,
    fresh_db: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    small_rows: int,
    first: str,
) -> None:
    """Below finality, positions only bought into and holdings only traded are folded blind and added
    to by key; an index built that way equals one that reads every row first. One block per batch,
    wallets that buy, buy again and then sell in consecutive blocks, and share buys followed by a
    distribution: the sell's and the distribution's batches read rows the batch still being written
    folded blind (the stored row plus that delta, or the row once that batch has committed). The
    order is forced, not left to timing: `first` = "reader" holds each backfill write until the next
    batch's snapshot has been read, "writer" holds each snapshot read until the batch before it has
    committed."""
    import asyncio
    import threading

    from indexer import fold as F
    from indexer.service import Indexer

    monkeypatch.setattr(bulk, "SMALL_ROWS", small_rows)
    sim(node.url, node.deployment, seed=11, max_events=120, resolve=True)
    market = open_market(node)
    om = node.w3.eth.contract(address=node.deployment["contracts"]["OpinionMarket"], abi=load_abi("OpinionMarket"))
    for w in REORG_WALLETS[:3]:
        wallet = node.w3.eth.accounts[w]
        for amount in (3 * 10**6, 2 * 10**6):
            tx = om.functions.buy(market, 1, amount, 0, FAR).transact({"from": wallet, "gas": 600_000})
            node.w3.eth.wait_for_transaction_receipt(tx)
        shares = om.functions.positionOf(market, wallet).call()[0] // 2
        tx = om.functions.sell(market, 1, shares, 0, FAR).transact({"from": wallet, "gas": 600_000})
        node.w3.eth.wait_for_transaction_receipt(tx)
    # a position created by a buy and a sell in one block is not blind (the sell reads it); a buy in
    # the next block is, and is added to by key
    wallet = node.w3.eth.accounts[REORG_WALLETS[3]]
    node.anvil.call("evm_setAutomine", False)
    om.functions.buy(market, 0, 3 * 10**6, 0, FAR).transact({"from": wallet, "gas": 600_000})
    om.functions.sell(market, 0, 1_000, 0, FAR).transact({"from": wallet, "gas": 600_000})
    node.anvil.mine(1)
    node.anvil.call("evm_setAutomine", True)
    tx = om.functions.buy(market, 0, 10**6, 0, FAR).transact({"from": wallet, "gas": 600_000})
    assert node.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    # holdings, twice: two share buys per wallet, then a distribution that reads all the creator's
    # holders (the second round's buys then carry credited dividends over from the first)
    cs = node.w3.eth.contract(address=node.deployment["contracts"]["CreatorShares"], abi=load_abi("CreatorShares"))
    usdc = node.w3.eth.contract(address=node.deployment["contracts"]["USDC"], abi=load_abi("MockUSDC"))
    creator = next(a for a in node.w3.eth.accounts[2:14] if cs.functions.supplyOf(a).call() > 0)
    for w in REORG_WALLETS[:3]:
        tx = usdc.functions.approve(cs.address, 2**256 - 1).transact({"from": node.w3.eth.accounts[w]})
        node.w3.eth.wait_for_transaction_receipt(tx)
    for _ in range(2):
        for w in REORG_WALLETS[:3]:
            for _ in range(2):
                tx = cs.functions.buyShares(creator, 1, 2**255, FAR).transact(
                    {"from": node.w3.eth.accounts[w], "gas": 600_000}
                )
                node.w3.eth.wait_for_transaction_receipt(tx)
        node.anvil.call("evm_increaseTime", 3_600)  # an hour of the buys' dividend fees vests
        tx = cs.functions.distributeDividends(creator).transact({"from": node.w3.eth.accounts[1], "gas": 600_000})
        assert node.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    node.anvil.mine(70)  # all of it below anvil's finalized block (head - 64)
    real_keys_of, real_with_deltas = F.keys_of, F.with_deltas
    folded_blind: list[int] = []
    committed: list[bool] = []
    tables: set[str] = set()

    def keys_of(events: Any, blind: bool = False) -> F.Keys:
        keys = real_keys_of(events, blind)
        folded_blind.append(len(keys.blind))
        return keys

    def with_deltas(stored: Any, deltas: Any, was_committed: bool) -> Any:
        committed.append(was_committed)
        tables.update(type(r).__name__ for r in deltas.values())
        return real_with_deltas(stored, deltas, was_committed)

    # Events by batch end block: "committed" is set once a batch has committed, "read" once the
    # snapshot of the batch after it has been read. A wait that never ends fails after 60 s.
    real_write, real_prefetch, real_finish, real_backfill = (
        write.write_batch,
        Indexer._prefetch,
        Indexer._finish,
        Indexer.backfill,
    )
    # threading.Event: a batch is written on the BatchWriter's thread and event loop
    marks: dict[tuple[str, int], threading.Event] = {}
    target = [0]

    def mark(what: str, block: int) -> threading.Event:
        return marks.setdefault((what, block), threading.Event())

    async def wait(what: str, block: int) -> None:
        if not await asyncio.to_thread(mark(what, block).wait, 60):
            raise TimeoutError(f"no {what!r} mark for block {block} in 60 s")

    async def backfill(self: Indexer, conn: Any, to: int, stop: Any) -> None:
        target[0] = to
        await real_backfill(self, conn, to, stop)

    async def prefetch(self: Indexer, reader: Any, keys: F.Keys, written: Any) -> Any:
        if first == "writer" and written is not None:
            await wait("committed", written.end.number)
        got = await real_prefetch(self, reader, keys, written)
        if written is not None:
            mark("read", written.end.number).set()
        return got

    async def write_batch(conn: Any, chain_id: int, batch: Any) -> Any:
        if first == "reader" and batch.end.number < target[0]:  # a backfill batch with a successor
            await wait("read", batch.end.number)
        return await real_write(conn, chain_id, batch)

    def finish(self: Indexer, batch: Any, seq: Any) -> None:
        real_finish(self, batch, seq)
        mark("committed", batch.end.number).set()

    monkeypatch.setattr(F, "keys_of", keys_of)
    monkeypatch.setattr(F, "with_deltas", with_deltas)
    monkeypatch.setattr(write, "write_batch", write_batch)
    monkeypatch.setattr(Indexer, "_prefetch", prefetch)
    monkeypatch.setattr(Indexer, "_finish", finish)
    monkeypatch.setattr(Indexer, "backfill", backfill)
    spans = {"initial_span": 1, "max_span": 1, "concurrency": 3}
    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path, **spans)) == 0
    assert sum(folded_blind) > 0
    # the sells' and the distribution's batches read rows the batch before folded blind
    assert tables == {"PositionRow", "HoldingRow"}
    assert set(committed) == {first == "writer"}

    monkeypatch.setattr(F, "keys_of", lambda events, blind=False: real_keys_of(events, False))
    for name, real in (("_prefetch", real_prefetch), ("_finish", real_finish), ("backfill", real_backfill)):
        monkeypatch.setattr(Indexer, name, real)
    monkeypatch.setattr(write, "write_batch", real_write)
    other = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, other, tmp_path, **spans)) == 0
    got, want = dump(db_dsn), dump(other)
    for table in want:
        assert got[table] == want[table], table
    reconcile(node.w3, node.deployment, db_dsn)


def test_market_fees_before_the_creators_first_share_reconcile(node: Node, db_dsn: str, tmp_path: Path) -> None:
    """Review s15 F2: the creator's first buy credits the market fees its markets earned before it to the
    creator (SharesTraded.distributed, traderClaimable) and they become CreatorShares' (marketFeesFolded)
    while OpinionMarket still holds them; the claim that collects them leaves the pool as it was."""
    market = open_market(node)  # created by account 14, who holds no share of itself
    for i in range(3):
        tx = node.w3.eth.send_transaction(buy_request(node, market, i, 50_000 * 10**6))  # type: ignore[arg-type]
        node.w3.eth.wait_for_transaction_receipt(tx)
    creator = node.w3.eth.accounts[14]
    om = node.w3.eth.contract(address=node.deployment["contracts"]["OpinionMarket"], abi=load_abi("OpinionMarket"))
    cs = node.w3.eth.contract(address=node.deployment["contracts"]["CreatorShares"], abi=load_abi("CreatorShares"))
    backlog = om.functions.creatorFeesAccrued(creator).call()
    assert backlog > 0
    tx = cs.functions.buyShares(creator, 1, 0, FAR).transact({"from": creator, "gas": 600_000})
    node.w3.eth.wait_for_transaction_receipt(tx)
    settings = make_settings(node.url, node.deployment, db_dsn, tmp_path)
    assert index_to_head(settings) == 0
    reconcile(node.w3, node.deployment, db_dsn)
    (c,) = fetch(
        db_dsn,
        "SELECT market_fees_folded, distributed_total FROM idx.creators WHERE creator = $1",
        bytes.fromhex(creator[2:]),
    )
    assert int(c["market_fees_folded"]) == int(c["distributed_total"]) == backlog
    tx = cs.functions.claimDividends(creator).transact({"from": creator, "gas": 600_000})
    node.w3.eth.wait_for_transaction_receipt(tx)
    assert index_to_head(settings) == 0
    reconcile(node.w3, node.deployment, db_dsn)


def test_warm_up_lots_reconcile_through_midnights_sells_and_claims(node: Node, db_dsn: str, tmp_path: Path) -> None:
    """The warm-up (docs/design/dividend-warmup.md): pending lots bought on two days, a sell of pending shares,
    a 00:00 passed with no fold (lots still unmarked), a fold passing one and then two 00:00s (PendingMatured
    marks lots whose holders do not settle), a claim that settles marked lots: after each stage the index
    (holdings' lots, creators' pending supply, the SQL claimable) equals the contract's views to the unit."""
    w3, dep = node.w3, node.deployment
    cs = w3.eth.contract(address=dep["contracts"]["CreatorShares"], abi=load_abi("CreatorShares"))
    usdc = w3.eth.contract(address=dep["contracts"]["USDC"], abi=load_abi("MockUSDC"))
    om = w3.eth.contract(address=dep["contracts"]["OpinionMarket"], abi=load_abi("OpinionMarket"))
    creator, a, b, trader = (w3.eth.accounts[i] for i in (2, 3, 4, 5))
    keeper = w3.eth.accounts[1]
    settings = make_settings(node.url, dep, db_dsn, tmp_path, initial_span=3, max_span=5)

    def send(fn: Any, sender: str) -> None:
        receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "gas": 3_000_000}))
        assert receipt["status"] == 1, node.anvil.call(
            "debug_traceTransaction", receipt["transactionHash"].hex(), {"tracer": "callTracer"}
        ).get("output")

    def at(t: int) -> None:
        node.anvil.call("evm_setNextBlockTimestamp", t)

    def check() -> None:
        assert index_to_head(settings) == 0
        reconcile(w3, dep, db_dsn)

    for w in (creator, a, b, trader):
        send(usdc.functions.mint(w, 10_000_000 * 10**6), w)
        send(usdc.functions.approve(cs.address, 2**256 - 1), w)
        send(usdc.functions.approve(om.address, 2**256 - 1), w)
    day = w3.eth.get_block("latest")["timestamp"] // 86_400 + 1
    at(day * 86_400 + 3_600)
    send(cs.functions.buyShares(creator, 1, 2**256 - 1, FAR), creator)
    send(om.functions.createMarket("q", "c", (day + 20) * 86_400, 1_000 * 10**6), creator)
    send(cs.functions.buyShares(creator, 3, 2**256 - 1, FAR), a)
    send(cs.functions.buyShares(creator, 2, 2**256 - 1, FAR), b)
    send(om.functions.buy(1, 1, 50_000 * 10**6, 0, FAR), trader)
    check()  # lots pending
    at((day + 1) * 86_400 + 3_600)
    send(cs.functions.buyShares(creator, 4, 2**256 - 1, FAR), a)  # a second lot, a day later
    at((day + 1) * 86_400 + 3 * 3_600)
    send(cs.functions.sellShares(creator, 5, 0, FAR), a)  # 4 new + 1 old: pending shares first
    check()
    at((day + 2) * 86_400 + 60)
    node.anvil.mine()  # b's and a's old lot's 00:00 passed, no fold yet: unmarked
    check()
    send(om.functions.buy(1, 0, 20_000 * 10**6, 0, FAR), trader)
    send(cs.functions.distributeDividends(creator), keeper)  # marks them; neither a nor b settles
    send(om.functions.buy(1, 1, 30_000 * 10**6, 0, FAR), trader)  # fees for the lots that now earn
    check()
    at((day + 5) * 86_400 + 60)
    send(cs.functions.buyShares(creator, 2, 2**256 - 1, FAR), trader)  # a fold passing several 00:00s
    send(cs.functions.claimDividends(creator), b)  # b's marked lot becomes earning shares
    check()
    at((day + 8) * 86_400)
    send(cs.functions.distributeDividends(creator), keeper)
    send(cs.functions.claimDividends(creator), a)
    check()
    matured = fetch(db_dsn, "SELECT sum(shares) AS n FROM idx.ev_pending_matured")[0]["n"]
    assert int(matured) == 2 + 2 + 2


def test_fees_of_a_day_between_two_maturities_reconcile(node: Node, db_dsn: str, tmp_path: Path) -> None:
    """Lots maturing at two 00:00s, a market fee on the day between them and no fold until after both
    (CreatorShares credits that day's fees between the two lots: two PendingMatured, two accumulators): the
    index (lots, pending supply, the SQL claimable) equals the contract's views to the unit."""
    w3, dep = node.w3, node.deployment
    cs = w3.eth.contract(address=dep["contracts"]["CreatorShares"], abi=load_abi("CreatorShares"))
    usdc = w3.eth.contract(address=dep["contracts"]["USDC"], abi=load_abi("MockUSDC"))
    om = w3.eth.contract(address=dep["contracts"]["OpinionMarket"], abi=load_abi("OpinionMarket"))
    creator, a, b, trader = (w3.eth.accounts[i] for i in (2, 3, 4, 5))
    settings = make_settings(node.url, dep, db_dsn, tmp_path, initial_span=3, max_span=5)

    def send(fn: Any, sender: str) -> None:
        receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "gas": 3_000_000}))
        assert receipt["status"] == 1

    for w in (creator, a, b, trader):
        send(usdc.functions.mint(w, 10_000_000 * 10**6), w)
        send(usdc.functions.approve(cs.address, 2**256 - 1), w)
        send(usdc.functions.approve(om.address, 2**256 - 1), w)
    day = w3.eth.get_block("latest")["timestamp"] // 86_400 + 1
    node.anvil.call("evm_setNextBlockTimestamp", day * 86_400 + 3_600)
    send(cs.functions.buyShares(creator, 1, 2**256 - 1, FAR), creator)
    send(om.functions.createMarket("q", "c", (day + 20) * 86_400, 1_000 * 10**6), creator)
    send(cs.functions.buyShares(creator, 2, 2**256 - 1, FAR), a)  # earns from day + 2
    node.anvil.call("evm_setNextBlockTimestamp", (day + 1) * 86_400 + 3_600)
    send(cs.functions.buyShares(creator, 3, 2**256 - 1, FAR), b)  # earns from day + 3
    node.anvil.call("evm_setNextBlockTimestamp", (day + 2) * 86_400 + 12 * 3_600)
    send(om.functions.buy(1, 1, 100_000 * 10**6, 0, FAR), trader)  # a's lot earns this day, b's not
    node.anvil.call("evm_setNextBlockTimestamp", (day + 3) * 86_400 + 60)
    send(cs.functions.distributeDividends(creator), w3.eth.accounts[1])
    assert index_to_head(settings) == 0
    reconcile(w3, dep, db_dsn)
    accs = fetch(db_dsn, "SELECT shares, acc_per_share FROM idx.ev_pending_matured ORDER BY log_index")
    assert [int(r["shares"]) for r in accs] == [2, 3]
    assert accs[0]["acc_per_share"] < accs[1]["acc_per_share"]
