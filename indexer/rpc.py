"""The indexer's eth_ methods over the one JSON-RPC client (core/rpc.py): headers, eth_getLogs of a
range checked against the answering node's own head, logs by block hash, logs from receipts.

Errors are core's (core/rpc_errors.py), re-exported here: RpcError, RangeTooLarge, TransientRpcError,
RateLimited, FatalRpcError.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson
import structlog

from core import rpc as core_rpc
from core.rpc import Provider, RetryPolicy
from core.rpc_errors import (
    FatalRpcError,
    RangeTooLarge,
    RateLimited,
    RpcError,
    TimedOut,
    TransientRpcError,
    batch_refused,
    classify,
    wait_hint,
)
from indexer.chain import BlockRef
from indexer.wire import LOGS_BATCH, LogsElem, RawLog, parse_header, parse_log

log = structlog.get_logger("rpc")
_warned: set[tuple[int, str]] = set()  # (provider, what was wrong): warned once each

__all__ = [
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


def _numbered(asked: int, raw: Any) -> BlockRef:
    """A block object asked for by number: parsed, and refused (asked again) when it is another block
    — the start block, a range's end or a tip block taken on a node's word for the wrong number."""
    h = raw if isinstance(raw, BlockRef) else parse_header(raw)
    if h.number != asked:
        raise TransientRpcError(f"eth_getBlockByNumber({asked}) answered block {h.number}: not trusted, retrying")
    return h


class Rpc(core_rpc.Rpc):
    """core.rpc.Rpc with the typed calls the indexer makes."""

    no_receipts = False  # set once a provider said eth_getBlockReceipts does not exist

    async def header(self, block: int | str, require: bool = False) -> BlockRef | None:
        tag = hex(block) if isinstance(block, int) else block
        parse = parse_header if isinstance(block, str) else functools.partial(_numbered, block)
        h: BlockRef | None = await self.call("eth_getBlockByNumber", [tag, False], require=require, parse=parse)
        return h

    async def headers(self, numbers: Sequence[int], chunk: int = 500, require: bool = False) -> dict[int, BlockRef]:
        """Headers by number (batched). Numbers the node does not have are missing from the result,
        or, with `require`, retried (a lagging node behind a load balancer) until they come."""
        out: dict[int, BlockRef] = {}
        for i in range(0, len(numbers), chunk):
            part = numbers[i : i + chunk]
            calls = [("eth_getBlockByNumber", [hex(n), False]) for n in part]
            for n, h in zip(part, await self.batch(calls, [require] * len(part), parse=parse_header), strict=True):
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
    ) -> tuple[list[RawLog], BlockRef | None]:
        """eth_getLogs of a range, sent in ONE HTTP request with eth_getBlockByNumber(to_block): the
        answer counts only when the node that gave it also has to_block (its header is not null), so
        a lagging node behind a load balancer cannot answer "no logs" for blocks it does not have.
        Returns the logs (fields still hex, typed by msgspec) and that header (for the caller's hash
        check). Retried alone like any call. With `block_hash` (from_block = to_block = its number):
        eth_getLogs of that block by hash, with eth_getBlockByHash."""
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
            answer = await self._send(u, body, "eth_getLogs", self._max_logs_bytes, LOGS_BATCH.decode)
            if isinstance(answer, LogsElem):  # the single call, or an error for the whole batch
                if check and answer.error is not None and batch_refused(str(answer.error.get("message", ""))):
                    raise self._no_batches(u, str(answer.error.get("message", "")))
                if check and answer.error is None:
                    raise TransientRpcError(f"eth_getLogs: a single answer to a batch {str(answer)[:200]}")
                answer = [LogsElem(first, answer.result, answer.error)]
            by_id = {a.id: a for a in answer}
            logs_elem, head_elem = by_id.get(first), by_id.get(first + 1)
            if logs_elem is None:
                raise TransientRpcError("eth_getLogs: the batch answer misses the call")
            if logs_elem.error is not None:
                if self._observe:
                    self._observe("eth_getLogs", 0.0, "rpc_error")
                raise self._error(logs_elem.error)
            if not isinstance(logs_elem.result, list):
                raise TransientRpcError(f"eth_getLogs: answer without a list result ({str(logs_elem.result)[:100]})")
            refused = suspect(logs_elem.result, wanted, from_block, to_block, hx)
            if refused:
                text = f"{what}: {refused[1]}: not trusted, retrying"
                if (u.index, refused[0]) not in _warned:  # once per provider and kind of lie
                    _warned.add((u.index, refused[0]))
                    log.warning("rpc_answer_refused", method="eth_getLogs", provider=u.index, error=text)
                raise TransientRpcError(text)
            if not check:
                return logs_elem.result, None
            head = head_elem.result if head_elem is not None else None
            if not isinstance(head, dict):
                raise TransientRpcError(
                    f"{what}: the answering node does not have the block"
                    " (lagging behind the load balancer's head): not trusted, retrying"
                )
            return logs_elem.result, _numbered(to_block, head)

        return await self._retrying("eth_getLogs", once, span=to_block - from_block + 1)

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
            logs = await self.get_logs_by_hash_raw(block.hash, addresses)
            if logs:
                return logs
        return await self.confirmed_logs_raw(block, addresses)

    async def get_logs_by_hash_raw(self, block_hash: bytes, addresses: Sequence[str]) -> list[RawLog]:
        """EIP-234: a node that does not have the block answers an error, which is retried; so is a
        malformed or suspect answer (checked inside the call, which is asked again alone)."""
        wanted, hx = _wanted(addresses), "0x" + block_hash.hex()

        def checked(raw: Any) -> list[RawLog]:
            if not isinstance(raw, list):
                raise TransientRpcError(f"eth_getLogs of block {hx} returned {type(raw).__name__}")
            try:
                logs = msgspec.convert(raw, list[RawLog])
            except msgspec.ValidationError as exc:
                raise TransientRpcError(
                    f"eth_getLogs of block {hx}: malformed log object from the node: {exc}"
                ) from None
            return _of_block(logs, wanted, hx, "eth_getLogs")

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
                return await self.receipts_logs_raw(block.hash, addresses)
            except RangeTooLarge as exc:  # a block's receipts above max_response_mb: by hash instead
                log.warning("receipts_too_large", block=block.number, error=str(exc)[:160])
            except FatalRpcError as exc:  # the method does not exist on this provider
                self.no_receipts = True
                log.warning("receipts_unsupported", error=str(exc)[:200], fallback="eth_getLogs + eth_getBlockByHash")
        logs, _ = await self.get_logs_checked(block.number, block.number, addresses, block_hash=block.hash)
        return logs

    async def receipts_logs_raw(self, block_hash: bytes, addresses: Sequence[str]) -> list[RawLog]:
        """Logs of our addresses read from the block's receipts (the bloom cross-check). A node that
        does not have the block answers null: retried, never read as "no logs"; so is a malformed
        or suspect answer (checked inside the call)."""
        wanted, hx = _wanted(addresses), "0x" + block_hash.hex()

        def checked(receipts: Any) -> list[RawLog]:
            out = []
            try:
                for r in receipts:
                    for raw in r.get("logs", []):
                        if raw["address"].lower() in wanted:
                            out.append(msgspec.convert(raw, RawLog))
            except (AttributeError, KeyError, TypeError, msgspec.ValidationError) as exc:
                raise TransientRpcError(f"eth_getBlockReceipts of block {hx}: malformed answer ({exc})") from None
            return _of_block(out, wanted, hx, "eth_getBlockReceipts")

        logs: list[RawLog] = await self.call("eth_getBlockReceipts", [hx], require=True, parse=checked)
        return logs


def _of_block(logs: list[RawLog], wanted: frozenset[str], hx: str, method: str) -> list[RawLog]:
    """`logs`, read by block hash `hx`, when none is suspect; else a TransientRpcError (asked again)."""
    refused = suspect(logs, wanted, block_hash=hx)
    if refused:
        raise TransientRpcError(f"{method} of block {hx}: {refused[1]}: not trusted")
    return logs


def _wanted(addresses: Sequence[str]) -> frozenset[str]:
    return frozenset([*addresses, *(a.lower() for a in addresses)])


def suspect(
    logs: Sequence[RawLog],
    wanted: frozenset[str],
    from_block: int = 0,
    to_block: int | None = None,
    block_hash: str | None = None,
) -> tuple[str, str] | None:
    """(kind, why) an eth_getLogs answer cannot be committed, or None. Kinds:
    - "malformed": a log whose block number or index is not hex, whose hashes are not 32 bytes, or
      with no topic (our contracts have no anonymous events);
    - "address": a log of an address not asked for;
    - "block": a log marked removed, of a block outside the range asked, or of another block than
      the hash asked (a caching layer or a load balancer mixing answers up).
    Committed, a stray log would sit in a batch that is not its own: the range that does hold it
    would then fail on its primary key for ever. Checked inside the call, so that a suspect answer
    is asked again alone (pure; ~0.15 us per log)."""
    for r in logs:
        try:
            n = int(r.blockNumber, 16)
            if int(r.logIndex, 16) < 0 or n < 0:
                raise ValueError("negative")
        except ValueError:
            return "malformed", f"a log with block number {r.blockNumber[:40]!r} and index {r.logIndex[:40]!r}"
        if len(r.blockHash) != 66 or len(r.transactionHash) != 66 or not r.topics:
            return "malformed", f"a log of block {n} with a hash not 32 bytes or no topic"
        if r.removed:
            return "block", f"a log marked removed (of a block reorged out) at block {n}"
        if r.address not in wanted and r.address.lower() not in wanted:
            return "address", f"a log of address {r.address[:42]}, not one asked for"
        if block_hash is not None:
            if r.blockHash.lower() != block_hash:
                return "block", f"a log of block {r.blockHash[:66]}, not the block asked"
        elif n < from_block or (to_block is not None and n > to_block):
            return "block", f"a log of block {n}, outside the range asked"
    return None
