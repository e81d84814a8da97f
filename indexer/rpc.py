"""The indexer's eth_ methods over the one JSON-RPC client (core/rpc.py): headers, eth_getLogs of a
range checked against the answering node's own head, logs by block hash, logs from receipts.

Errors are core's (core/rpc_errors.py), re-exported here: RpcError, RangeTooLarge, TransientRpcError,
RateLimited, FatalRpcError.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import msgspec
import orjson
import structlog

from core import rpc as core_rpc
from core.rpc import Provider, RetryPolicy
from core.rpc_errors import (
    BadAnswer,
    FatalRpcError,
    RangeTooLarge,
    RateLimited,
    RpcError,
    TimedOut,
    TransientRpcError,
    batch_refused,
    batch_unsupported,
    classify,
    wait_hint,
)
from indexer.chain import BlockRef
from indexer.wire import BLOCK_END, LOG_INDEX_END, LOGS_BATCH, LogsElem, RawLog, parse_header, parse_log

log = structlog.get_logger("rpc")
_warned: set[tuple[int, str]] = set()  # (provider, what was wrong): warned once each

__all__ = [
    "BadAnswer",
    "FatalRpcError",
    "RangeTooLarge",
    "RateLimited",
    "RawLog",
    "RetryPolicy",
    "Rpc",
    "RpcError",
    "TimedOut",
    "TransientRpcError",
    "classify",
    "parse_header",
    "parse_log",
    "wait_hint",
]


# Unsealed headers refused, and seconds with no sealed one from any provider, before the chain is taken not to
# seal them any more (a fork that added a header field).
UNSEALED_REFUSED = 50
UNSEALED_QUIET_S = 300.0


class Seals:
    """Whether this chain's headers hash to their own hash (wire.sealed), learnt from the answers: once
    one did, a header that does not was altered on its way (a provider's proxy, a cache) — its time would
    be stored with the events (review s21 hp: a proxy shifting timestamps a day) — and is asked again,
    of another provider when there is one. Only when no provider has answered a sealed header for
    UNSEALED_QUIET_S, with UNSEALED_REFUSED refused meanwhile (a fork that added a header field: every
    provider), are they taken, with a warning. A count alone was met by one batch of 50 headers from one
    lying provider (review s21 hf); the honest one answers a sealed header within the quiet time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.chain_seals = False
        self.unsealed = 0
        self.clock = clock
        self.sealed_at = clock()

    def check(self, h: BlockRef) -> BlockRef:
        if h.sealed:
            self.chain_seals, self.unsealed, self.sealed_at = True, 0, self.clock()
        elif self.chain_seals:
            self.unsealed += 1
            if self.unsealed < UNSEALED_REFUSED or self.clock() - self.sealed_at < UNSEALED_QUIET_S:
                raise BadAnswer(f"block {h.number}: its header does not hash to its hash (altered): not trusted")
            self.chain_seals = False
            log.warning("headers_unsealed", block=h.number, refused=self.unsealed, note="taken from now on")
        return h


def _numbered(asked: int, raw: Any, block_hash: bytes | None = None, seals: Seals | None = None) -> BlockRef:
    """A block object asked for by number (or by `block_hash`): parsed, and refused (asked again) when
    it is another block — the start block, a range's end or a tip block taken on a node's word for the
    wrong number or hash — or, with `seals`, when it was altered."""
    h = raw if isinstance(raw, BlockRef) else parse_header(raw)
    if seals is not None:
        seals.check(h)
    if h.number != asked:
        raise BadAnswer(f"eth_getBlockByNumber({asked}) answered block {h.number}: not trusted, retrying")
    if block_hash is not None and h.hash != block_hash:
        raise BadAnswer(f"eth_getBlockByHash(0x{block_hash.hex()}) answered block 0x{h.hash.hex()}: not trusted")
    return h


class Rpc(core_rpc.Rpc):
    """core.rpc.Rpc with the typed calls the indexer makes."""

    no_receipts = False  # set once a provider said eth_getBlockReceipts does not exist

    @functools.cached_property
    def seals(self) -> Seals:
        return Seals()

    async def learn_seals(self, within: float = 5.0) -> None:
        """Every provider's head header, at once (one try each, `within` seconds in all): one sealed
        header tells that this chain's headers seal before a liar's first header is taken as the
        chain's way (Seals). A provider down now is learnt nothing from."""
        once = RetryPolicy(attempts=1, seconds=within)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await asyncio.gather(
                    *(self.header("latest", provider=i, retry=once) for i in range(self.providers)),
                    return_exceptions=True,
                )

    def parse_header(self, raw: Any) -> BlockRef:
        """parse_header, refusing an altered header (Seals)."""
        return self.seals.check(parse_header(raw))

    async def header(
        self, block: int | str, require: bool = False, provider: int | None = None, retry: RetryPolicy | None = None
    ) -> BlockRef | None:
        tag = hex(block) if isinstance(block, int) else block
        parse = self.parse_header if isinstance(block, str) else functools.partial(_numbered, block, seals=self.seals)
        h: BlockRef | None = await self.call(
            "eth_getBlockByNumber", [tag, False], require=require, provider=provider, retry=retry, parse=parse
        )
        return h

    async def headers(self, numbers: Sequence[int], chunk: int = 500, require: bool = False) -> dict[int, BlockRef]:
        """Headers by number (batched). Numbers the node does not have are missing from the result,
        or, with `require`, retried (a lagging node behind a load balancer) until they come."""
        out: dict[int, BlockRef] = {}
        for i in range(0, len(numbers), chunk):
            part = numbers[i : i + chunk]
            calls = [("eth_getBlockByNumber", [hex(n), False]) for n in part]
            for n, h in zip(part, await self.batch(calls, [require] * len(part), parse=self.parse_header), strict=True):
                if h is None:
                    continue
                if h.number == n:
                    out[n] = h
                    continue
                again = await self.header(n, require)  # another block than asked: that one again, alone
                if again is not None:
                    out[n] = again
        return out

    async def get_logs_checked(
        self,
        from_block: int,
        to_block: int,
        addresses: Sequence[str],
        check: bool = True,
        block_hash: bytes | None = None,
        avoid: Collection[int] = (),
        answered_by: set[int] | None = None,
        topics: frozenset[tuple[str, str]] | None = None,
    ) -> tuple[list[RawLog], BlockRef | None]:
        """eth_getLogs of a range, sent in ONE HTTP request with eth_getBlockByNumber(to_block): the
        answer counts only when the node that gave it also has to_block (its header is not null), so
        a lagging node behind a load balancer cannot answer "no logs" for blocks it does not have.
        Returns the logs (fields still hex, typed by msgspec) and that header (for the caller's hash
        check). Retried alone like any call. With `block_hash` (from_block = to_block = its number):
        eth_getLogs of that block by hash, with eth_getBlockByHash. `avoid`: providers not asked while
        another is configured (a confirming read); `answered_by` gets the provider that answered;
        `topics`: the (address, topic0) pairs of our events, a log of another is refused."""
        hx = None if block_hash is None else "0x" + block_hash.hex()
        query: dict[str, Any] = (
            {"fromBlock": hex(from_block), "toBlock": hex(to_block)} if hx is None else {"blockHash": hx}
        )
        params = [{**query, "address": list(addresses)}]
        header_call = (
            ["eth_getBlockByNumber", [hex(to_block), False]] if hx is None else ["eth_getBlockByHash", [hx, False]]
        )
        what = f"eth_getLogs {from_block}..{to_block}" if hx is None else f"eth_getLogs of block {hx}"
        wanted = _wanted(addresses)
        first = self._next_ids(2)
        calls = [{"jsonrpc": "2.0", "id": first, "method": "eth_getLogs", "params": params}]
        if check:
            calls.append({"jsonrpc": "2.0", "id": first + 1, "method": header_call[0], "params": header_call[1]})
        body = orjson.dumps(calls if check else calls[0])

        async def once(u: Provider) -> tuple[list[RawLog], BlockRef | None]:
            answer, seconds = await self._send(u, body, "eth_getLogs", self._max_logs_bytes, LOGS_BATCH.decode)
            if isinstance(answer, LogsElem):  # the single call, or an error for the whole batch
                said = str(answer.error.get("message", "")) if answer.error is not None else ""
                if check and (batch_refused(said) or batch_unsupported(said)):
                    raise self._no_batches(u, said)
                if check and answer.error is None:
                    raise BadAnswer(f"provider {u.index}, eth_getLogs: a single answer to a batch {str(answer)[:200]}")
                answer = [LogsElem(first, answer.result, answer.error)]
            by_id: dict[Any, LogsElem] = {}
            for a in answer:
                # Two different answers to one call (a load balancer merging two backends' answers): the last,
                # empty one was kept, with the other's header as its proof, and the range's logs were dropped
                # (review s19 h4). Compared only when an id repeats: a 10,000-log answer is not walked.
                kept = by_id.setdefault(a.id, a)
                if kept is not a and kept != a:
                    raise BadAnswer(f"provider {u.index}, eth_getLogs: the batch answer holds id {a.id!r} twice")
            logs_elem, head_elem = by_id.get(first), by_id.get(first + 1)
            if logs_elem is None:
                raise BadAnswer(f"provider {u.index}, eth_getLogs: the batch answer misses the call")
            if logs_elem.error is not None:
                raise self._error(logs_elem.error)  # counted as the provider's failure by _retrying
            if not isinstance(logs_elem.result, list):
                raise BadAnswer(
                    f"provider {u.index}, eth_getLogs: answer without a list result ({str(logs_elem.result)[:100]})"
                )
            refused = suspect(logs_elem.result, wanted, from_block, to_block, hx, topics)
            if refused:
                text = f"{what}: {refused[1]}: not trusted, retrying"
                if (u.index, refused[0]) not in _warned:  # once per provider and kind of lie
                    _warned.add((u.index, refused[0]))
                    log.warning("rpc_answer_refused", method="eth_getLogs", provider=u.index, error=text)
                raise BadAnswer(f"provider {u.index}, {text}")
            end: BlockRef | None = None
            if check:
                head = head_elem.result if head_elem is not None else None
                if not isinstance(head, dict):
                    raise BadAnswer(  # answered at once: asked again soon, likely of another backend
                        f"provider {u.index}, {what}: the answering node does not have the block"
                        " (lagging behind the load balancer's head): not trusted, retrying"
                    )
                try:
                    end = _numbered(to_block, head, block_hash, self.seals)
                except TransientRpcError as exc:
                    raise BadAnswer(f"provider {u.index}, {what}: {exc}") from None
            self._succeeded(u, "eth_getLogs", seconds)
            if answered_by is not None:
                answered_by.add(u.index)
            return logs_elem.result, end

        return await self._retrying("eth_getLogs", once, span=to_block - from_block + 1, avoid=frozenset(avoid))

    def _no_batches(self, u: Provider, message: str) -> RpcError:
        """Provider `u` refused the [eth_getLogs, eth_getBlockByNumber] pair as a batch: its answers
        cannot be proven to come from a node that has the range (docs/indexer.md, Completeness), so
        it gets no eth_getLogs range (core's provider pick; with none left, a configuration error)."""
        u.batch_cap = 1
        log.warning("provider_refuses_batches", provider=u.index, error=message[:160])
        return TransientRpcError(
            f"provider {u.index} refuses JSON-RPC batches ({message[:120]}): eth_getLogs ranges are sent"
            " with eth_getBlockByNumber in one batch of 2, to prove the answering node has the range"
        )

    async def maybe_block_logs_raw(self, block: BlockRef, addresses: Sequence[str]) -> list[RawLog]:
        """Our logs of a block whose bloom says they may be there: by hash (EIP-234), and when that
        finds none, from a node proven to have the block (confirmed_logs_raw), since a node without
        the block may answer an empty list. Once a provider lacks receipts, the proven read is the
        only one (the same eth_getLogs by hash, with its block)."""
        if not self.no_receipts:
            logs = await self.get_logs_by_hash_raw(block, addresses)
            if logs:
                return logs
        return await self.confirmed_logs_raw(block, addresses)

    async def get_logs_by_hash_raw(self, block: BlockRef, addresses: Sequence[str]) -> list[RawLog]:
        """EIP-234: a node that does not have the block answers an error, which is retried; so is a
        malformed or suspect answer (checked inside the call, which is asked again alone)."""
        wanted, hx = _wanted(addresses), "0x" + block.hash.hex()

        def checked(raw: Any) -> list[RawLog]:
            if not isinstance(raw, list):
                raise TransientRpcError(f"eth_getLogs of block {hx} returned {type(raw).__name__}")
            try:
                logs = msgspec.convert(raw, list[RawLog])
            except msgspec.ValidationError as exc:
                raise TransientRpcError(
                    f"eth_getLogs of block {hx}: malformed log object from the node: {exc}"
                ) from None
            return _of_block(logs, wanted, hx, block.number, "eth_getLogs")

        logs: list[RawLog] = await self.call(
            "eth_getLogs", [{"blockHash": hx, "address": list(addresses)}], require=True, parse=checked
        )
        return logs

    async def confirmed_logs_raw(self, block: BlockRef, addresses: Sequence[str]) -> list[RawLog]:
        """Our logs of a block whose bloom says "maybe" but whose eth_getLogs by hash had none, from a
        node proven to have the block: its receipts (eth_getBlockReceipts), or, from a provider
        without that method, eth_getLogs by hash sent in one batch with eth_getBlockByHash (null from
        a node without the block)."""
        if not self.no_receipts:
            try:
                return await self.receipts_logs_raw(block, addresses)
            except RangeTooLarge as exc:  # a block's receipts above max_response_mb: by hash instead
                log.warning("receipts_too_large", block=block.number, error=str(exc)[:160])
            except FatalRpcError as exc:  # the method does not exist on this provider
                self.no_receipts = True
                log.warning("receipts_unsupported", error=str(exc)[:200], fallback="eth_getLogs + eth_getBlockByHash")
        logs, _ = await self.get_logs_checked(block.number, block.number, addresses, block_hash=block.hash)
        return logs

    async def receipts_logs_raw(self, block: BlockRef, addresses: Sequence[str]) -> list[RawLog]:
        """Logs of our addresses read from the block's receipts (the bloom cross-check). A node that
        does not have the block answers null: retried, never read as "no logs"; so is a malformed
        or suspect answer (checked inside the call), a receipt of another block, and receipts
        without a single log for a sealed header whose bloom is not empty (every log sets bits of
        its block's bloom: a node without the block answering [] is not "no logs")."""
        wanted, hx = _wanted(addresses), "0x" + block.hash.hex()
        bloom_set = block.sealed and any(block.bloom)

        def checked(receipts: Any) -> list[RawLog]:
            out = []
            logs_seen = 0
            try:
                if not isinstance(receipts, list):
                    raise TypeError(f"a JSON {type(receipts).__name__}, not a list")
                for r in receipts:
                    if str(r["blockHash"]).lower() != hx:
                        raise BadAnswer(
                            f"eth_getBlockReceipts of block {hx}: a receipt of block {r['blockHash']!s:.66}"
                        )
                    logs = r.get("logs", [])
                    logs_seen += len(logs)
                    for raw in logs:
                        if raw["address"].lower() in wanted:
                            out.append(msgspec.convert(raw, RawLog))
            except (AttributeError, KeyError, TypeError, msgspec.ValidationError) as exc:
                raise BadAnswer(f"eth_getBlockReceipts of block {hx}: malformed answer ({exc})") from None
            if bloom_set and not logs_seen:
                raise BadAnswer(
                    f"eth_getBlockReceipts of block {hx}: no log at all, but the block's sealed logsBloom is not"
                    " empty: not trusted"
                )
            return _of_block(out, wanted, hx, block.number, "eth_getBlockReceipts")

        logs: list[RawLog] = await self.call("eth_getBlockReceipts", [hx], require=True, parse=checked)
        return logs


def _of_block(logs: list[RawLog], wanted: frozenset[str], hx: str, number: int, method: str) -> list[RawLog]:
    """`logs`, read by block hash `hx` (of block `number`), when none is suspect; else a BadAnswer
    (asked again)."""
    refused = suspect(logs, wanted, number, number, hx)
    if refused:
        raise BadAnswer(f"{method} of block {hx}: {refused[1]}: not trusted")
    return logs


def _wanted(addresses: Sequence[str]) -> frozenset[str]:
    return frozenset([*addresses, *(a.lower() for a in addresses)])


def suspect(
    logs: Sequence[RawLog],
    wanted: frozenset[str],
    from_block: int = 0,
    to_block: int | None = None,
    block_hash: str | None = None,
    topics: frozenset[tuple[str, str]] | None = None,
) -> tuple[str, str] | None:
    """(kind, why) an eth_getLogs answer cannot be committed, or None. Kinds:
    - "malformed": a log whose block number or index is not hex or beyond what the tables hold
      (int8, int4: review s21 hp, a log index of 2**31 ended the run), whose hashes are not 32 bytes, with
      no topic (our contracts have no anonymous events), or whose data or topics are not strictly
      hex ("0x" and hex digits: the readers' int(word, 16) would take "-5", " 7" or "1_0");
    - "address": a log of an address not asked for;
    - "block": a log marked removed, of a block outside the range asked, or of another block than
      the hash asked (a caching layer or a load balancer mixing answers up);
    - "topic": with `topics` ((lowercase address, topic0) pairs), a log of an event that is not ours.
    Committed, a stray log would sit in a batch that is not its own: the range that does hold it
    would then fail on its primary key for ever. Checked inside the call, so that a suspect answer
    is asked again alone (pure; ~1.1 us per a Trade-sized log, 0.2 without the strict hex check)."""
    unhex = binascii.unhexlify
    for r in logs:
        try:
            n = int(r.blockNumber, 16)
            if not 0 <= int(r.logIndex, 16) < LOG_INDEX_END or not 0 <= n < BLOCK_END:
                raise ValueError("out of range")
        except ValueError:
            return "malformed", f"a log with block number {r.blockNumber[:40]!r} and index {r.logIndex[:40]!r}"
        if len(r.blockHash) != 66 or len(r.transactionHash) != 66 or not r.topics:
            return "malformed", f"a log of block {n} with a hash not 32 bytes or no topic"
        try:  # unhexlify: hex digits only (no sign, space or "_"), an even number of them
            if r.data[:2] != "0x":
                raise ValueError("no 0x")
            unhex(r.data[2:])
            for t in r.topics:
                if len(t) != 66 or t[:2] != "0x":
                    raise ValueError("not 32 bytes")
                unhex(t[2:])
        except ValueError:
            return "malformed", f"a log of block {n} whose data or topics are not 0x-prefixed hex"
        if r.removed:
            return "block", f"a log marked removed (of a block reorged out) at block {n}"
        if r.address not in wanted and r.address.lower() not in wanted:
            return "address", f"a log of address {r.address[:42]}, not one asked for"
        if block_hash is not None and r.blockHash.lower() != block_hash:
            return "block", f"a log of block {r.blockHash[:66]}, not the block asked"
        if n < from_block or (to_block is not None and n > to_block):
            return "block", f"a log of block {n}, outside the range asked"
        if topics is not None and (r.address.lower(), r.topics[0].lower()) not in topics:
            return "topic", f"a log of topic0 {r.topics[0][:66]}, not an event of abi/ for {r.address[:42]}"
    return None
