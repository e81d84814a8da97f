"""The transaction manager: simulate → record (PostgreSQL, fenced) → broadcast → track → confirm.

- Nonces are allocated locally under a lock, many in flight at once (pipelined), and resynced
  from the chain without ever moving below a recorded, unmined nonce (decide.next_nonce).
- Fees are EIP-1559 from eth_feeHistory with caps (decide.market_fees); a transaction unmined for
  `replace_after_blocks` is re-signed at the same nonce with ≥ bump_bps more on both fee fields,
  recorded as a new attempt, then broadcast. No bump when the balance cannot pay for it.
- A transaction is recorded (with its signed raw bytes and hash) BEFORE it is broadcast, so a
  crash at any point leaves the ledger able to finish the job: after a restart `track` finds the
  receipt, or rebroadcasts the recorded raw transaction.
- A mined transaction whose receipt disappears (reorg) goes back to pending and its raw bytes are
  rebroadcast; a gap below our pending nonces is filled with a zero-value self-transfer.

Errors: TxError (not signable), store.FencedError (not leader), rpc.RpcError (node).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import structlog
from eth_utils.address import to_checksum_address

from keeper import KeeperError, decide, store
from keeper.abi import error_name
from keeper.decide import FeePolicy, Fees
from keeper.keys import Signer, TxSignError
from keeper.metrics import Metrics
from keeper.rpc import Rpc, RpcError, hx, to_bytes, to_int
from keeper.settings import Settings
from keeper.store import Fence, FencedError, NewTx, TxRow

log = structlog.get_logger("keeper.tx")
CRASH_ENV = "KEEPER_CRASH_AT"  # test hook: SIGKILL this process at a named point (tests/keeper)
MAX_FILLS_PER_PASS = 8  # nonce-gap self-transfers signed per tracker pass
CRASH_ONCE_ENV = "KEEPER_CRASH_ONCE"  # test hook: a marker file; crash only if it does not exist yet


class TxError(KeeperError):
    pass


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) != name:
        return
    marker = os.environ.get(CRASH_ONCE_ENV)
    if marker:  # a restarted process (under a supervisor) runs on
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


# finalizeOutcome and resolveExpired: anyone's to call, simulated before each send, so a revert was a
# race and the job may send the step again (it bounds how often)
RETRIED_AFTER_REVERT = frozenset({"finalize", "expire"})


@dataclasses.dataclass(frozen=True, slots=True)
class TxRequest:
    job: str  # resolve (proposes) | finalize | expire | distribute | fill
    job_key: str
    to: bytes
    data: bytes
    gas_limit: int
    value: int = 0
    market_id: int | None = None
    creator: bytes | None = None
    queue_id: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Simulation:
    ok: bool
    gas_limit: int
    reason: str
    refused: bool = False  # the contract reverted with data (a definite "no", not a node or funds problem)
    node_trouble: bool = False  # the node did not evaluate it (rate limit, timeout): no answer, ask again later


@dataclasses.dataclass(slots=True)
class TrackSummary:
    live: int = 0
    mined: int = 0
    confirmed: int = 0
    reverted: int = 0
    replaced: int = 0
    rebroadcast: int = 0
    reorged: int = 0
    dropped: int = 0
    gaps_filled: int = 0
    waiting: dict[str, int] = dataclasses.field(default_factory=dict)


class TxManager:
    def __init__(
        self,
        rpc: Rpc,
        pool: asyncpg.Pool,
        signer: Signer,
        settings: Settings,
        fence: Callable[[], Fence | None],
        metrics: Metrics,
    ) -> None:
        self.rpc = rpc
        self.pool = pool
        self.signer = signer
        self.settings = settings
        self.chain_id = settings.chain.chain_id
        self._fence = fence
        self.metrics = metrics
        k = settings.keeper
        self.policy = FeePolicy(
            max_fee_cap=k.max_fee_per_gas_cap,
            priority_cap=k.max_priority_fee_cap,
            min_priority=k.min_priority_fee,
            base_multiplier_pct=k.base_fee_multiplier_pct,
            bump_bps=k.bump_bps,
        )
        self._lock = asyncio.Lock()
        self._next: int | None = None
        self._mined_floor = 0  # store.mined_nonce_floor as of the last resync_nonce
        self._ahead_logged = 0  # the ledger floor last reported ahead of the chain (one warning per value)
        self._low_balance_logged = False

    def fence(self) -> Fence:
        f = self._fence()
        if f is None:
            raise FencedError("not the leader")
        return f

    # ------------------------------------------------------------------ chain reads

    async def market_fees(self) -> Fees:
        k = self.settings.keeper
        hist = await self.rpc.call("eth_feeHistory", hex(k.fee_history_blocks), "latest", [k.fee_percentile])
        next_base = to_int(hist["baseFeePerGas"][-1])
        rewards = [to_int(r[0]) for r in hist.get("reward") or [] if r]
        return decide.market_fees(next_base, rewards, self.policy)

    async def simulate_many(self, reqs: Sequence[tuple[bytes, bytes, int]]) -> list[Simulation]:
        """eth_estimateGas for each (to, data, value) from the signer: a revert is a failed simulation."""
        calls = [
            ("eth_estimateGas", [{"from": self.signer.address, "to": hx(to), "data": hx(data), "value": hex(value)}])
            for to, data, value in reqs
        ]
        k = self.settings.keeper
        results = await self.rpc.batch([*calls, ("eth_getBlockByNumber", ["latest", False])])
        block = results[-1]
        # the latest block's gasLimit bounds what a node accepts; unread, keeper.max_gas_limit alone does
        block_gas = None if isinstance(block, RpcError) or not block else to_int(block["gasLimit"])
        out = []
        for res in results[:-1]:
            if isinstance(res, RpcError):
                refused = res.code != -1 and res.revert_data is not None and len(res.revert_data) >= 4
                # a refusal is named by its custom error; anything else (a revert without data, a rate
                # limit, a timeout) by the node's own words
                out.append(
                    Simulation(
                        False,
                        0,
                        error_name(res.revert_data) if refused else res.message[:200],
                        refused,
                        node_trouble=not refused and res.node_trouble,
                    )
                )
            else:
                estimate = to_int(res)
                gas = decide.bounded_gas_limit(estimate, k.gas_margin_pct, block_gas, k.max_gas_limit)
                if gas is None:  # a definite no: no node would take it (or it would spend a fortune)
                    bound = k.max_gas_limit if block_gas is None else min(k.max_gas_limit, block_gas)
                    reason = (
                        f"gas estimate {estimate} is above the bound {bound} (latest block gasLimit {block_gas},"
                        f" keeper.max_gas_limit {k.max_gas_limit})"
                    )
                    self.metrics.gas_above_bound.inc()
                    log.error("gas_estimate_above_bound", estimate=estimate, bound=bound, block_gas_limit=block_gas)
                    out.append(Simulation(False, 0, reason, refused=True))
                else:
                    out.append(Simulation(True, gas, ""))
        return out

    async def _chain_nonces(self) -> tuple[int, int]:
        latest, pending = await self.rpc.batch(
            [
                ("eth_getTransactionCount", [self.signer.address, "latest"]),
                ("eth_getTransactionCount", [self.signer.address, "pending"]),
            ]
        )
        for r in (latest, pending):
            if isinstance(r, RpcError):
                raise r
        return to_int(latest), to_int(pending)

    async def resync_nonce(self, live: Sequence[TxRow] | None = None) -> int:
        if live is None:
            live = await store.load_live(self.pool, self.chain_id, self.signer.address_bytes)
        latest, pending = await self._chain_nonces()
        live_nonces = [t.nonce for t in live if t.status == "pending"]
        local = self._next
        if local is None:
            local = await store.stored_next_nonce(self.pool, self.chain_id, self.signer.address_bytes)
            if local is not None and not live_nonces:
                local = None  # nothing live: the chain is the truth (but never below what the ledger saw mined)
        floor = await store.mined_nonce_floor(self.pool, self.chain_id, self.signer.address_bytes)
        if floor > max(pending, latest) and floor != self._ahead_logged:
            # a node behind our own mined transactions (the floor holds), or a chain reset under an old ledger
            # (nothing this keeper signs will mine: point it at a fresh database)
            self._ahead_logged = floor
            log.warning("nonce_ledger_ahead_of_chain", ledger_next=floor, chain_pending=pending, chain_latest=latest)
        self._next = decide.next_nonce(local, pending, latest, live_nonces, floor)
        self._mined_floor = floor
        self.metrics.nonce_gap.set(len(decide.nonce_gaps(max(latest, floor), live_nonces)))
        return self._next

    # ------------------------------------------------------------------ submit

    def _sign(self, req: TxRequest, nonce: int, fees: Fees) -> tuple[bytes, bytes]:
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": to_checksum_address(req.to),
            "value": req.value,
            "data": "0x" + req.data.hex(),
            "gas": req.gas_limit,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        }
        return self.signer.sign(tx)

    async def submit(self, reqs: Sequence[TxRequest]) -> list[str]:
        """Records then broadcasts every request whose job key is not already live; returns the job
        keys recorded. Requests are recorded in batches, each in one fenced transaction."""
        if not reqs:
            return []
        fees = await self.market_fees()
        recorded: list[str] = []
        async with self._lock:
            if self._next is None:
                await self.resync_nonce()
            step = max(1, self.settings.keeper.record_batch)
            for start in range(0, len(reqs), step):
                chunk = reqs[start : start + step]
                fence = self.fence()
                assert self._next is not None
                nonce = self._next
                async with store.connection(self.pool) as conn, conn.transaction():
                    await store.check_fence(conn, fence)
                    keys = [r.job_key for r in chunk]
                    live = await store.live_job_keys(conn, self.chain_id, keys)
                    unreverted = await store.live_job_keys(conn, self.chain_id, keys, reverted=False)
                    queued = await store.lock_queued(conn, [r.queue_id for r in chunk if r.queue_id is not None])
                    # an operator's queue entry may follow a transaction that reverted, and so may the
                    # permissionless steps (their job counts the reverts, jobs.STEP_REVERTS_MAX); nothing else
                    todo = [
                        r
                        for r in chunk
                        if (r.queue_id is None and r.job not in RETRIED_AFTER_REVERT and r.job_key not in live)
                        or (r.queue_id is None and r.job in RETRIED_AFTER_REVERT and r.job_key not in unreverted)
                        or (r.queue_id in queued and r.job_key not in unreverted)
                    ]
                    new: list[NewTx] = []
                    for r in todo:
                        try:  # one request the signer refuses is skipped (its nonce goes to the next)
                            raw, h = self._sign(r, nonce + len(new), fees)
                        except TxSignError as exc:
                            self.metrics.item_failures.labels(job=r.job, stage="sign").inc()
                            log.error("item_failed", job=r.job, stage="sign", job_key=r.job_key, error=str(exc))
                            continue
                        new.append(
                            NewTx(
                                job=r.job,
                                job_key=r.job_key,
                                to=r.to,
                                data=r.data,
                                value=r.value,
                                nonce=nonce + len(new),
                                gas_limit=r.gas_limit,
                                max_fee_per_gas=fees.max_fee_per_gas,
                                max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
                                tx_hash=h,
                                raw_tx=raw,
                                market_id=r.market_id,
                                creator=r.creator,
                                queue_id=r.queue_id,
                            )
                        )
                    if todo and not new:  # not one item: the signer itself is unusable (systemic)
                        raise TxSignError(f"the signer refused all {len(todo)} transactions of a batch")
                    ids = await store.insert_txs(conn, fence, self.signer.address_bytes, new)
                self._next = nonce + len(new)
                for t in new:
                    log.info(
                        "tx_recorded",
                        job=t.job,
                        job_key=t.job_key,
                        nonce=t.nonce,
                        tx_hash=hx(t.tx_hash),
                        max_fee_per_gas=t.max_fee_per_gas,
                        max_priority_fee_per_gas=t.max_priority_fee_per_gas,
                    )
                crash_point("after_record")
                attempt_ids = await self._attempt_ids([ids[t.job_key] for t in new])
                await self._broadcast([(attempt_ids[ids[t.job_key]], t.raw_tx, t.job_key) for t in new], fence)
                recorded.extend(t.job_key for t in new)
                self.metrics.pending.inc(len(new))
        return recorded

    async def _attempt_ids(self, tx_ids: list[int]) -> dict[int, int]:
        async with store.connection(self.pool) as conn:
            rows = await conn.fetch(
                "SELECT tx_id, id FROM keeper.tx_attempts WHERE tx_id = ANY($1::bigint[]) AND attempt = 0", tx_ids
            )
        return {r["tx_id"]: r["id"] for r in rows}

    async def _broadcast(self, items: Sequence[tuple[int, bytes, str]], fence: Fence) -> None:
        """Sends recorded raw transactions (nonce order) and notes the head they were sent at."""
        if not items:
            return
        calls = [("eth_sendRawTransaction", [hx(raw)]) for _, raw, _ in items] + [("eth_blockNumber", [])]
        results = await self.rpc.batch(calls)
        head_r = results[-1]
        # An unread head is recorded as unknown, never as block 0 (which would make the transaction look
        # many blocks old: a fee bump at once, or "dropped" without the grace); the tracker sends it again.
        head = None if isinstance(head_r, RpcError) else to_int(head_r)
        crash_point("after_broadcast")
        marks: list[tuple[int, int | None, str | None, bool]] = []
        for (attempt_id, _, job_key), res in zip(items, results[:-1], strict=True):
            err, for_good = None, False
            if isinstance(res, RpcError):
                msg = res.message.lower()
                if any(m in msg for m in decide.ALREADY_KNOWN):
                    err = None
                else:
                    err = res.message[:200]
                    # a transport failure (code -1) says nothing about the transaction
                    for_good = res.code != -1 and not res.transient and decide.broadcast_refused_for_good(msg)
                    if "insufficient funds" in msg:
                        self.metrics.low_balance.set(1)
                    # recorded, so the tracker rebroadcasts or replaces it; the others in the batch went out
                    self.metrics.item_failures.labels(job=job_key.split(":", 1)[0], stage="send").inc()
                    log.warning("tx_broadcast_refused", job_key=job_key, error=err, for_good=for_good)
            marks.append((attempt_id, head, err, for_good))
        await store.mark_broadcast(self.pool, fence, marks)

    # ------------------------------------------------------------------ track

    async def track(self) -> TrackSummary:
        """One pass over every live transaction: receipts, confirmations, reorgs, replacements."""
        fence = self.fence()
        summary = TrackSummary()
        live = await store.load_live(self.pool, self.chain_id, self.signer.address_bytes)
        summary.live = len(live)
        # One batch, one node: the head and nonces first, receipts after (a tx mined in between is seen
        # as mined, never as dropped), and for each mined tx the block at its recorded height (a reorg
        # needs that block to have another hash). A failed lookup is no answer, never "no receipt".
        hashes: list[tuple[TxRow, int, bytes]] = [(t, a.attempt, a.tx_hash) for t in live for a in t.attempts]
        pending_latest = [t for t in live if t.status == "pending" and t.attempts]
        was_mined = [t for t in live if t.status != "pending" and t.mined_block is not None]
        calls: list[tuple[str, list[Any]]] = [
            ("eth_blockNumber", []),
            ("eth_getBlockByNumber", ["finalized", False]),
            ("eth_getTransactionCount", [self.signer.address, "latest"]),
            ("eth_getTransactionCount", [self.signer.address, "pending"]),
            ("eth_getBalance", [self.signer.address, "latest"]),
            ("eth_getTransactionCount", [self.signer.address, "finalized"]),
            *(("eth_getTransactionReceipt", [hx(h)]) for _, _, h in hashes),
            *(("eth_getTransactionByHash", [hx(t.attempts[-1].tx_hash)]) for t in pending_latest),
            *(("eth_getBlockByNumber", [hex(t.mined_block or 0), False]) for t in was_mined),
        ]
        node = self.rpc.pick_node()  # the receipts and the canonical-block check below ask the same node
        results = await self.rpc.batch(calls, node=node)
        pre, rest = results[:6], results[6:]
        receipt_results = rest[: len(hashes)]
        known_results = rest[len(hashes) : len(hashes) + len(pending_latest)]
        block_results = rest[len(hashes) + len(pending_latest) :]
        for r in (pre[0], pre[2], pre[3], pre[4]):
            if isinstance(r, RpcError):
                raise r
        head, nonce_latest, balance = to_int(pre[0]), to_int(pre[2]), to_int(pre[4])
        nonce_finalized = None  # a node without the count (or a malformed one): decide_tx's fallback
        if not isinstance(pre[5], RpcError) and pre[5] is not None:
            with contextlib.suppress(TypeError, ValueError):
                nonce_finalized = to_int(pre[5])
        fin_block = pre[1]
        finalized = (
            max(0, head - self.settings.chain.finality_depth)
            if isinstance(fin_block, RpcError) or not fin_block
            else to_int(fin_block["number"])
        )
        if nonce_finalized is None and any(t.status == "pending" and t.nonce < nonce_latest for t in live):
            # no "finalized" tag for the count on this node: the count at the finalized block's number (recent
            # state every full node keeps); without either, "dropped" is never decided (decide_tx waits)
            with contextlib.suppress(RpcError, TypeError, ValueError):
                nonce_finalized = to_int(
                    await self.rpc.call("eth_getTransactionCount", self.signer.address, hex(finalized))
                )
        self._observe_balance(balance)
        self.metrics.head.set(head)
        if not live:
            async with self._lock:
                await self.resync_nonce(live)
            self.metrics.pending.set(0)
            return summary

        receipts: dict[int, decide.Receipt] = {}
        lookup_failed: set[int] = set()
        for (t, attempt, _), res in zip(hashes, receipt_results, strict=True):
            if isinstance(res, RpcError):
                lookup_failed.add(t.id)
                continue
            if not res:
                continue
            try:
                receipts[t.id] = decide.Receipt(
                    attempt=attempt,
                    block_number=to_int(res["blockNumber"]),
                    block_hash=to_bytes(res["blockHash"]),
                    success=to_int(res["status"]) == 1,
                    gas_used=to_int(res["gasUsed"]),
                    effective_gas_price=to_int(res.get("effectiveGasPrice") or "0x0"),
                )
            except (KeyError, TypeError, ValueError, AttributeError) as exc:  # the node's fault: this tx waits
                lookup_failed.add(t.id)
                log.warning("receipt_malformed", job_key=t.job_key, error=f"{type(exc).__name__}: {exc}"[:200])
        # receipts that would change the ledger (first seen, or in another block than recorded)
        fresh = {t.id for t in live if t.id in receipts and t.mined_block_hash != receipts[t.id].block_hash}
        await self._drop_off_chain(receipts, fresh, lookup_failed, node)
        lookup_failed -= receipts.keys()  # one attempt's receipt is enough
        if lookup_failed:
            self.metrics.receipt_lookups_failed.inc(len(lookup_failed))
            log.warning("receipt_lookup_failed", transactions=len(lookup_failed), decision="none_this_pass")
        block_at_mined: dict[int, bytes] = {}
        for t, b in zip(was_mined, block_results, strict=True):
            if not isinstance(b, RpcError) and b:
                with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                    block_at_mined[t.id] = to_bytes(b["hash"])
        # A failed lookup counts as held: it must not make refusals abandon (cancel) an attempt the node
        # may hold; it only skips this pass's rebroadcast
        known = {
            t.id: isinstance(r, RpcError) or r is not None for t, r in zip(pending_latest, known_results, strict=True)
        }
        # The head was read before the receipts: a receipt in block N proves the head is at least N
        # (otherwise a block mined between the two reads would count as unconfirmed for one pass).
        head = max([head, *(r.block_number for r in receipts.values())])
        fees: Fees | None = None
        if any(t.status == "pending" for t in live):
            fees = await self.market_fees()
        chain = decide.ChainView(head, finalized, nonce_latest, balance, fees or Fees(0, 0), nonce_finalized)
        confirmations = self.settings.confirmations
        replace_after = self.settings.keeper.replace_after_blocks
        rebroadcasts: list[tuple[int, bytes, str]] = []
        still_pending: list[int] = []
        mined: list[store.Mined] = []
        for t in live:
            mined_attempt = next((a.attempt for a in t.attempts if a.tx_hash == t.mined_tx_hash), None)
            view = decide.TxView(
                status=t.status,  # type: ignore[arg-type]
                nonce=t.nonce,
                gas_limit=t.gas_limit,
                value=t.value,
                attempts=tuple(
                    decide.Attempt(
                        a.attempt,
                        Fees(a.max_fee_per_gas, a.max_priority_fee_per_gas),
                        a.sent_block,
                        known.get(t.id, True) if a is t.attempts[-1] else True,
                        a.is_cancel,
                        a.last_sent_block,
                        a.refusals,
                    )
                    for a in t.attempts
                ),
                receipt=receipts.get(t.id),
                mined_block_hash=t.mined_block_hash,
                mined_attempt=mined_attempt,
                finalized=t.finalized,
                lookup_failed=t.id in lookup_failed,
                block_hash_at_mined=block_at_mined.get(t.id),
            )
            try:
                action = decide.decide_tx(
                    view,
                    chain,
                    confirmations,
                    replace_after,
                    self.policy,
                    self.settings.keeper.confirm_at_finalized,
                    self.settings.keeper.max_broadcast_refusals,
                )
                if action is None:
                    if t.status == "pending":
                        still_pending.append(t.nonce)
                    continue
                await self._apply(t, action, head, fence, summary, rebroadcasts, still_pending, mined)
            except FencedError:
                raise
            except (asyncpg.PostgresError, KeeperError, LookupError, TypeError, ValueError, StopIteration) as exc:
                # one transaction that cannot be decided or recorded never stops the others' tracking
                self._track_failed(t, exc)
                if t.status == "pending":
                    still_pending.append(t.nonce)
        await self._record_mined(mined, fence)
        if rebroadcasts:
            await self._broadcast(rebroadcasts, fence)
        self.metrics.pending.set(len(still_pending))
        async with self._lock:
            await self.resync_nonce()
        # below the ledger's mined floor every nonce is used on chain, whatever a lagging node counts: no gap
        # there (a node behind our own finalized transactions made a filler at a used nonce, and every pass
        # failed on txs_nonce, review h6)
        gaps = decide.nonce_gaps(max(nonce_latest, self._mined_floor), still_pending, [t.nonce for t in live])
        self.metrics.nonce_gap.set(len(gaps))
        if len(gaps) > MAX_FILLS_PER_PASS:
            # many gaps at once is more likely a bad nonce reading (a node of another chain, a reset
            # dev chain) than lost transactions: fill the lowest few per pass, never hundreds at once
            log.warning("nonce_gaps_capped", gaps=len(gaps), filled=MAX_FILLS_PER_PASS, lowest=gaps[0])
            gaps = gaps[:MAX_FILLS_PER_PASS]
        if gaps:
            summary.gaps_filled = await self._fill_gaps(gaps, fence)
        return summary

    async def _drop_off_chain(
        self, receipts: dict[int, decide.Receipt], fresh: set[int], lookup_failed: set[int], node: int
    ) -> None:
        """Keeps the `fresh` receipts only when their block is the block at that height of `node`, the
        node that gave them (one from a block off the canonical chain — a stale or lying provider —
        would be recorded as done, then never looked at again; asking another, lagging node would drop
        good receipts pass after pass); the others are no answer this pass."""
        heights = sorted({receipts[i].block_number for i in fresh})
        if not heights:
            return
        answers = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in heights], node=node)
        canonical: dict[int, bytes] = {}
        for n, b in zip(heights, answers, strict=True):
            if not isinstance(b, RpcError) and b:
                with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                    canonical[n] = to_bytes(b["hash"])
        for tx_id in fresh:
            r = receipts[tx_id]
            if canonical.get(r.block_number) != r.block_hash:
                del receipts[tx_id]
                lookup_failed.add(tx_id)
                self.metrics.receipts_off_chain.inc()
                log.warning(
                    "receipt_not_canonical",
                    tx_id=tx_id,
                    block_number=r.block_number,
                    receipt_block_hash=hx(r.block_hash),
                    canonical_hash=hx(canonical[r.block_number]) if r.block_number in canonical else None,
                    decision="none_this_pass",
                )

    def _track_failed(self, t: TxRow, exc: BaseException) -> None:
        self.metrics.track_failures.inc()
        log.error("tx_track_failed", job_key=t.job_key, nonce=t.nonce, error=f"{type(exc).__name__}: {exc}"[:300])

    async def _record_mined(self, mined: list[store.Mined], fence: Fence) -> None:
        """Receipts recorded in one transaction; when that fails (one row conflicting with the ledger),
        each alone, so the others are recorded and only the conflicting one is reported."""
        try:
            await store.mark_mined(self.pool, fence, mined)
            return
        except FencedError:
            raise
        except asyncpg.PostgresError as exc:
            if len(mined) == 1:
                self._track_failed(mined[0].tx, exc)
                return
        for m in mined:
            try:
                await store.mark_mined(self.pool, fence, [m])
            except FencedError:
                raise
            except asyncpg.PostgresError as exc:
                self._track_failed(m.tx, exc)

    async def _apply(
        self,
        t: TxRow,
        action: decide.TxAction,
        head: int,
        fence: Fence,
        summary: TrackSummary,
        rebroadcasts: list[tuple[int, bytes, str]],
        still_pending: list[int],
        mined: list[store.Mined],
    ) -> None:
        if isinstance(action, decide.MarkMined):
            r = action.receipt
            att = next(a for a in t.attempts if a.attempt == r.attempt)
            mined.append(
                store.Mined(
                    t,
                    att.tx_hash,
                    r.block_number,
                    r.block_hash,
                    r.success,
                    r.gas_used,
                    r.effective_gas_price,
                    action.confirmed,
                    action.finalized,
                )
            )
            outcome = "reverted" if not r.success else ("confirmed" if action.confirmed else "mined")
            if t.status == "pending":
                summary.mined += 1
                log.info(
                    "tx_mined",
                    job_key=t.job_key,
                    nonce=t.nonce,
                    tx_hash=hx(att.tx_hash),
                    block_number=r.block_number,
                    attempt=r.attempt,
                    success=r.success,
                )
            if outcome in ("confirmed", "reverted"):
                summary.confirmed += outcome == "confirmed"
                summary.reverted += outcome == "reverted"
                self.metrics.tx_total.labels(job=t.job, outcome=outcome).inc()
                self.metrics.fees_paid.inc(r.gas_used * r.effective_gas_price)
                log.info(
                    "tx_" + outcome,
                    job_key=t.job_key,
                    nonce=t.nonce,
                    block_number=r.block_number,
                    fee_paid_wei=r.gas_used * r.effective_gas_price,
                )
        elif isinstance(action, decide.MarkFinalized):
            await store.mark_finalized(self.pool, fence, t.id)
        elif isinstance(action, decide.Reorged):
            await store.mark_reorged(self.pool, fence, t)
            att = next(a for a in t.attempts if a.attempt == action.rebroadcast_attempt)
            rebroadcasts.append((att.id, att.raw_tx, t.job_key))
            summary.reorged += 1
            still_pending.append(t.nonce)
            self.metrics.reorged.inc()
            log.warning(
                "tx_reorged_out", job_key=t.job_key, nonce=t.nonce, tx_hash=hx(att.tx_hash), old_block=t.mined_block
            )
        elif isinstance(action, decide.Dropped):
            abandoned = action.reason == decide.ABANDONED
            refused = next((a for a in reversed(t.attempts) if not a.is_cancel), t.attempts[-1])
            reason = f"{action.reason}: {refused.broadcast_error}" if abandoned else action.reason
            await store.mark_dropped(self.pool, fence, t, reason, fail_queue=abandoned)
            summary.dropped += 1
            self.metrics.tx_total.labels(job=t.job, outcome="abandoned" if abandoned else "dropped").inc()
            log.error("tx_dropped", job_key=t.job_key, nonce=t.nonce, reason=reason)
        elif isinstance(action, decide.Abandon):
            still_pending.append(t.nonce)
            last = t.attempts[-1]
            self.metrics.tx_abandoned.labels(job=t.job).inc()
            log.error(
                "tx_broadcast_abandoned",
                job_key=t.job_key,
                nonce=t.nonce,
                attempt=last.attempt,
                refusals=last.refusals,
                error=last.broadcast_error,
                action="cancel_at_same_nonce",
            )
            await self._replace(t, action.fees, fence, abandon=True)
        elif isinstance(action, decide.Rebroadcast):
            att = next(a for a in t.attempts if a.attempt == action.attempt)
            rebroadcasts.append((att.id, att.raw_tx, t.job_key))
            summary.rebroadcast += 1
            still_pending.append(t.nonce)
            if action.stuck_reason:
                summary.waiting[action.stuck_reason] = summary.waiting.get(action.stuck_reason, 0) + 1
                log.warning("tx_stuck", job_key=t.job_key, nonce=t.nonce, reason=action.stuck_reason)
            log.info("tx_rebroadcast", job_key=t.job_key, nonce=t.nonce, tx_hash=hx(att.tx_hash))
        elif isinstance(action, decide.Replace):
            still_pending.append(t.nonce)
            if await self._replace(t, action.fees, fence):
                summary.replaced += 1
            else:
                summary.waiting["simulation_unavailable"] = summary.waiting.get("simulation_unavailable", 0) + 1
        elif isinstance(action, decide.Wait):
            still_pending.append(t.nonce)
            summary.waiting[action.reason] = summary.waiting.get(action.reason, 0) + 1
            if action.reason not in ("queued_behind_lower_nonce", decide.NONCE_USED_NOT_FINAL):  # normal for a while
                log.warning("tx_stuck", job_key=t.job_key, nonce=t.nonce, reason=action.reason)

    async def _replace(self, t: TxRow, fees: Fees, fence: Fence, abandon: bool = False) -> bool:
        """A fee-bumped replacement, after re-checking the call (decision 7: every send is simulated).
        If the contract now refuses the call (a revert with data: someone else resolved the market
        meanwhile), the nonce is freed with a zero-value self-transfer at the bumped fees instead of
        paying for a doomed call. If the re-check itself fails (timeout, rate limit, a node error) the
        transaction is only sent again as it is and the bump waits for a pass that can check: a busy
        node must never cancel a valid transaction. `abandon`: every node refused the transaction for
        good, so it is cancelled without a re-check. Returns whether a replacement was sent."""
        async with store.connection(self.pool) as conn:
            row = await conn.fetchrow("SELECT to_address, data FROM keeper.txs WHERE id = $1", t.id)
        if row is None:
            raise TxError(f"transaction {t.id} vanished from the ledger")
        req = TxRequest(
            job=t.job,
            job_key=t.job_key,
            to=bytes(row["to_address"]),
            data=bytes(row["data"]),
            gas_limit=t.gas_limit,
            value=t.value,
        )
        cancel = abandon or t.attempts[-1].is_cancel
        if not cancel and t.job != "fill":
            (sim,) = await self.simulate_many([(req.to, req.data, req.value)])
            if not sim.ok and not sim.refused:
                last = t.attempts[-1]
                self.metrics.replacements_deferred.inc()
                log.warning("tx_replace_deferred", job_key=t.job_key, nonce=t.nonce, reason=sim.reason[:200])
                await self._broadcast([(last.id, last.raw_tx, t.job_key)], fence)
                return False
            if not sim.ok:
                cancel = True
                log.warning("tx_cancelling", job_key=t.job_key, nonce=t.nonce, reason=sim.reason)
        if cancel:
            me = self.signer.address_bytes
            req = TxRequest(job=t.job, job_key=t.job_key, to=me, data=b"", gas_limit=21_000)
        raw, h = self._sign(req, t.nonce, fees)
        attempt = t.attempts[-1].attempt + 1
        attempt_id = await store.insert_attempt(
            self.pool,
            fence,
            t.id,
            attempt,
            h,
            raw,
            fees.max_fee_per_gas,
            fees.max_priority_fee_per_gas,
            is_cancel=cancel,
        )
        old = t.attempts[-1]
        log.info(
            "tx_replaced",
            job_key=t.job_key,
            nonce=t.nonce,
            attempt=attempt,
            tx_hash=hx(h),
            cancel=cancel,
            max_fee_per_gas=fees.max_fee_per_gas,
            max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
            old_max_fee_per_gas=old.max_fee_per_gas,
            old_max_priority_fee_per_gas=old.max_priority_fee_per_gas,
        )
        self.metrics.replaced.inc()
        await self._broadcast([(attempt_id, raw, t.job_key)], fence)
        return True

    async def _fill_gaps(self, gaps: Sequence[int], fence: Fence) -> int:
        """Zero-value self-transfers at the missing nonces so the transactions above them can mine."""
        fees = await self.market_fees()
        me = self.signer.address_bytes
        new: list[NewTx] = []
        for n in gaps:
            req = TxRequest(job="fill", job_key=f"fill:0x{me.hex()}:{n}", to=me, data=b"", gas_limit=21_000)
            raw, h = self._sign(req, n, fees)
            new.append(
                NewTx(
                    job="fill",
                    job_key=req.job_key,
                    to=me,
                    data=b"",
                    value=0,
                    nonce=n,
                    gas_limit=21_000,
                    max_fee_per_gas=fees.max_fee_per_gas,
                    max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
                    tx_hash=h,
                    raw_tx=raw,
                )
            )
        async with self._lock, store.connection(self.pool) as conn:
            async with conn.transaction():
                await store.check_fence(conn, fence)
                live = await store.live_job_keys(conn, self.chain_id, [t.job_key for t in new])
                new = [t for t in new if t.job_key not in live]
                ids = await store.insert_txs(conn, fence, me, new)
            attempt_ids = await self._attempt_ids(list(ids.values()))
        for t in new:
            log.warning("nonce_gap_filled", nonce=t.nonce, tx_hash=hx(t.tx_hash))
        await self._broadcast([(attempt_ids[ids[t.job_key]], t.raw_tx, t.job_key) for t in new], fence)
        return len(new)

    def _observe_balance(self, balance: int) -> None:
        self.metrics.balance.set(balance)
        low = balance < self.settings.keeper.low_balance_wei
        self.metrics.low_balance.set(1 if low else 0)
        if low and not self._low_balance_logged:
            log.warning(
                "low_balance",
                address=self.signer.address,
                balance_wei=balance,
                threshold_wei=self.settings.keeper.low_balance_wei,
            )
        self._low_balance_logged = low

    async def wait_idle(self, timeout_s: float, poll_s: float = 0.5) -> TrackSummary:
        """Tracks until nothing is pending or mined-unconfirmed (used by `run --once`, tests, bench). A pass
        that fails (the node or the database, review s20 hk: a rate-limited node made `run --once` end in a
        traceback) is tried again until `timeout_s`; the TimeoutError then names the last failure."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        open_count: int | str = "some"
        failure = ""
        while True:
            try:
                summary = await self.track()
                async with store.connection(self.pool) as conn:
                    open_count = await conn.fetchval(
                        "SELECT count(*) FROM keeper.txs WHERE chain_id = $1 AND sender = $2"
                        " AND status IN ('pending', 'mined')",
                        self.chain_id,
                        self.signer.address_bytes,
                    )
                if open_count == 0:
                    return summary
                failure = ""
            except (RpcError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                failure = f"; the last pass failed: {type(exc).__name__}: {exc}"[:300]
                log.debug("track_pass_failed", error=failure)
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{open_count} transactions still open after {timeout_s}s{failure}")
            await asyncio.sleep(poll_s)
