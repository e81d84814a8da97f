"""Keeper test kit (helpers; fixtures are in conftest.py): real anvil (the session deployment,
snapshot/revert per test), a fresh migrated PostgreSQL database per test, the keeper built
in-process or run as a subprocess.

The indexer's tables the keeper reads (idx.markets, idx.creators) are filled directly here — that
is the schema contract between the two — while every contract state is real on anvil."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
from eth_account import Account
from web3 import Web3

from core.config import ChainSettings, DatabaseSettings, RedisSettings, ServicesSettings
from core.contracts import Deployment, load_deployment
from core.deploy import anvil_account
from keeper import jobs, store
from keeper.abi import decode_result, encode_call
from keeper.keys import Signer
from keeper.leader import Leader
from keeper.metrics import Metrics
from keeper.rpc import Rpc
from keeper.settings import KeeperSettings, Settings
from keeper.tx import TxManager
from tests.chain import ROOT, Anvil

ADMIN = anvil_account(0)
KEEPER = anvil_account(1)
USDC = 10**6


def keeper_section(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "signer": "raw",
        "local_dev_raw_key": True,
        "dev_anvil_account": 1,
        "http_port": -1,
        "confirmations": 1,
        "replace_after_blocks": 2,
        "track_interval_s": 0.3,
        "leader_poll_s": 0.5,
        "grace_period_s": 3600,
        "warm_enabled": False,
    }
    base.update(overrides)
    return base


def write_config(
    path: Path,
    rpc_url: str,
    dsn: str,
    deployment_path: Path,
    redis_url: str = "redis://127.0.0.1:56379/0",
    **keeper: Any,
) -> Path:
    sections = {
        "database": {"dsn": dsn},
        "redis": {"url": redis_url},
        "chain": {
            "name": "anvil",
            "chain_id": 31337,
            "rpc_urls": [rpc_url],
            "deployment": str(deployment_path),
            "confirmations": 1,
        },
        "keeper": keeper_section(**keeper),
    }
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for k, v in values.items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def make_settings(rpc_url: str, dsn: str, deployment_path: Path, **keeper: Any) -> Settings:
    return Settings(
        keeper=KeeperSettings(**keeper_section(**keeper)),
        chain=ChainSettings(
            chain_id=31337, rpc_urls=(rpc_url,), name="anvil", deployment=str(deployment_path), confirmations=1
        ),
        database=DatabaseSettings(dsn=dsn),
        redis=RedisSettings(),
        services=ServicesSettings(),
    )


# ------------------------------------------------------------------------- chain helpers


class ChainOps:
    """Sync web3 helpers for arranging contract state (admin = account 0)."""

    def __init__(self, w3: Web3, anvil: Anvil, dep: Deployment) -> None:
        self.w3, self.anvil, self.dep = w3, anvil, dep

    def send(
        self, acct: Any, to: str, data: bytes, nonce: int | None = None, wait: bool = True, max_fee: int | None = None
    ) -> bytes:
        base = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        tx = {
            "type": 2,
            "chainId": 31337,
            "to": Web3.to_checksum_address(to),
            "data": data,
            "value": 0,
            "nonce": self.w3.eth.get_transaction_count(acct.address, "pending") if nonce is None else nonce,
            "gas": 1_000_000,
            "maxFeePerGas": max_fee or 4 * base + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        h = self.w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
        if wait:
            r = self.w3.eth.wait_for_transaction_receipt(h, timeout=30)
            assert r["status"] == 1, f"tx to {to} reverted"
        return bytes(h)

    def now(self) -> int:
        """The chain's clock. An empty block is mined first: after evm_revert the latest block can be
        older than the time offset earlier tests added, and the next block takes the offset."""
        self.anvil.mine(1)
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> None:
        self.anvil.call("evm_increaseTime", hex(seconds))
        self.anvil.mine(1)

    def fund_usdc(self, acct: Any, amount: int) -> None:
        self.send(ADMIN, self.dep.usdc, encode_call("MockUSDC", "mint", acct.address, amount))
        self.send(acct, self.dep.usdc, encode_call("MockUSDC", "approve", self.dep.opinion_market, 2**255))
        self.send(acct, self.dep.usdc, encode_call("MockUSDC", "approve", self.dep.creator_shares, 2**255))

    def price_feeds(self, n: int, answer: int) -> list[str]:
        """n more price feeds: the deployment's mock feed's code at fresh addresses, `answer` their first round."""
        code = self.anvil.call("eth_getCode", self.dep.price_feed, "latest")
        feeds = ["0x" + (0xFEED0000 + i).to_bytes(20, "big").hex() for i in range(n)]
        for feed in feeds:
            self.anvil.call("anvil_setCode", feed, code)
            self.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", answer))
        return feeds

    def create_markets(self, n: int, end_time: int, liquidity: int = 10 * USDC) -> list[int]:
        """n markets by the admin, sent with consecutive nonces, then awaited."""
        self.fund_usdc(ADMIN, n * liquidity)
        first = self.market_count() + 1
        nonce = self.w3.eth.get_transaction_count(ADMIN.address, "pending")
        hashes = [
            self.send(
                ADMIN,
                self.dep.opinion_market,
                encode_call("OpinionMarket", "createMarket", f"Q{first + i}?", "test", end_time, liquidity),
                nonce=nonce + i,
                wait=False,
            )
            for i in range(n)
        ]
        for h in hashes:
            assert self.w3.eth.wait_for_transaction_receipt(h, timeout=120)["status"] == 1
        return list(range(first, first + n))

    def market_count(self) -> int:
        raw = self.w3.eth.call(
            {
                "to": Web3.to_checksum_address(self.dep.opinion_market),
                "data": encode_call("OpinionMarket", "marketCount"),
            }
        )
        return int.from_bytes(raw, "big")

    def market(self, market_id: int) -> tuple[Any, ...]:
        raw = self.w3.eth.call(
            {
                "to": Web3.to_checksum_address(self.dep.opinion_market),
                "data": encode_call("OpinionMarket", "getMarket", market_id),
            }
        )
        return decode_result("OpinionMarket", "getMarket", bytes(raw))

    def _logs(self, signature: str, market_id: int | None) -> list[Any]:
        topics: list[Any] = [Web3.keccak(text=signature)]
        if market_id is not None:
            topics.append("0x" + market_id.to_bytes(32, "big").hex())
        return list(
            self.w3.eth.get_logs(
                {
                    "fromBlock": 0,
                    "toBlock": "latest",
                    "address": Web3.to_checksum_address(self.dep.opinion_market),
                    "topics": topics,
                }
            )
        )

    def resolved_events(self, market_id: int | None = None) -> list[Any]:
        return self._logs("MarketResolved(uint256,uint8,address)", market_id)

    def proposed_events(self, market_id: int | None = None) -> list[Any]:
        return self._logs("OutcomeProposed(uint256,uint8,address,uint256)", market_id)

    def status(self, market_id: int) -> tuple[int, int, int]:
        """(status 0 open | 1 proposed | 2 disputed | 3 resolved, proposed outcome, final outcome) on chain."""
        m = self.market(market_id)
        return int(m[4]), int(m[7]), int(m[5])

    def past_challenge_window(self, market_id: int) -> None:
        """Mines a block at the market's challengeEnds: from the next block on it can be finalized."""
        ends = int(self.market(market_id)[8])
        assert ends > 0, f"market {market_id} has no proposal"
        if int(self.w3.eth.get_block("latest")["timestamp"]) < ends:
            self.anvil.call("evm_setNextBlockTimestamp", hex(ends))
            self.anvil.mine(1)

    def keeper_nonce(self) -> int:
        return int(self.w3.eth.get_transaction_count(KEEPER.address, "latest"))


# ------------------------------------------------------------------------- db helpers


async def bind_rule(dsn: str, market_id: int, feed: str, threshold: int) -> None:
    """A price-feed rule on market_id: outcome YES when the feed's answer at end time is >= threshold."""
    await fetch(
        dsn,
        "INSERT INTO keeper.price_feed_rules (chain_id, market_id, feed, comparison, threshold, created_by)"
        " VALUES (31337, $1, $2, 'gte', $3, 'test')",
        market_id,
        bytes.fromhex(feed[2:]),
        threshold,
    )


async def insert_markets(dsn: str, market_ids: list[int], end_time: int, creator: bytes = b"\x01" * 20) -> None:
    """What the indexer would have written for these markets (only the columns the keeper reads matter)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            """
            INSERT INTO idx.markets (chain_id, market_id, creator, question, category, end_time, initial_liquidity,
                                     yes_reserve, no_reserve, created_block, created_time, created_tx)
            VALUES (31337, $1, $2, 'Q?', 'test', to_timestamp($3), 10000000, 10000000, 10000000, 1, now(), '\\x00')
            ON CONFLICT DO NOTHING
            """,
            [(m, creator, end_time) for m in market_ids],
        )
    finally:
        await conn.close()


async def queue(dsn: str, market_id: int, outcome: int, reason: str = "test", by: str = "tester") -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by)"
                " VALUES (31337, $1, $2, $3, $4) RETURNING id",
                market_id,
                outcome,
                reason,
                by,
            )
        )
    finally:
        await conn.close()


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


# ------------------------------------------------------------------------- in-process keeper


@dataclasses.dataclass
class Harness:
    settings: Settings
    rpc: Rpc
    pool: asyncpg.Pool
    leader: Leader
    tx: TxManager
    ctx: jobs.Context
    metrics: Metrics
    plans: list[dict[str, Any]]


@contextlib.asynccontextmanager
async def harness(settings: Settings, lead: bool = True, dry_run: bool = False) -> AsyncIterator[Harness]:
    metrics = Metrics()
    plans: list[dict[str, Any]] = []
    leader = Leader(settings.database.dsn, settings.chain.chain_id, timeouts=settings.db_timeouts)
    async with (
        Rpc(settings.chain.rpc_urls) as rpc,
        store.create_pool(settings.database.dsn, settings.db_timeouts, min_size=1, max_size=4) as pool,
    ):
        if lead:
            assert await leader.try_acquire() is not None
        tx = TxManager(rpc, pool, Signer(KEEPER), settings, lambda: leader.fence, metrics)
        ctx = jobs.Context(
            settings=settings,
            pool=pool,
            rpc=rpc,
            deployment=load_deployment(settings.chain.deployment),
            metrics=metrics,
            tx=tx,
            signer_address=KEEPER.address,
            epoch=lambda: leader.fence.epoch if leader.fence else None,
            dry_run=dry_run,
            plan=plans.append,
        )
        try:
            yield Harness(settings, rpc, pool, leader, tx, ctx, metrics, plans)
        finally:
            await leader.release()


# ------------------------------------------------------------------------- subprocess keeper


def keeper_cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "keeper", *args, "--config", str(config)]


def run_keeper(
    config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        keeper_cmd(config, *args), cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


@contextlib.contextmanager
def keeper_process(config: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen(
        keeper_cmd(config, *args), cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(predicate: Any, timeout: float = 60, poll: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(poll)


__all__ = ["ADMIN", "KEEPER", "USDC", "Account"]


async def set_market_status(
    dsn: str, market_id: int, status: str, proposed_outcome: int | None = None, challenge_ends: int | None = None
) -> None:
    """What the indexer writes for OutcomeProposed / OutcomeDisputed (idx.markets status columns)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE idx.markets SET status = $2, resolved = ($2 = 'resolved'), proposed_outcome = $3,"
            " challenge_ends = to_timestamp($4) WHERE chain_id = 31337 AND market_id = $1",
            market_id,
            status,
            proposed_outcome,
            challenge_ends,
        )
    finally:
        await conn.close()


async def mine_until_settled(ops: ChainOps, h: Any, dsn: str, blocks: int = 12) -> None:
    """Mines and tracks one block at a time until the keeper's one transaction is no longer pending
    (at most `blocks`), then one more block and until nothing is open (manual mining)."""
    for _ in range(blocks):
        ops.anvil.mine(1)
        await h.tx.track()
        (t,) = await fetch(dsn, "SELECT status FROM keeper.txs")
        if t["status"] != "pending":
            break
    ops.anvil.mine(1)
    await h.tx.wait_idle(30, 0.1)
