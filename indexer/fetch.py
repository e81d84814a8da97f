"""The backfill's fetch side: one block range → checked headers, decoded events, raw COPY payloads.

    RangeFetcher(rpc, chain_id, addresses, policy, on_split).fetch(blocks, span, finalized) -> Prepared
    FetchProcess(ChildConfig(...), observe, on_split).fetch(...) — the same, in a child process

Nothing here touches the database, so the work can run beside the commit. In one process the
event loop interleaves it with the commit's round trips and each slice of parsing delays the next
statement; in the child process (the default) the parent's loop only folds and writes, and the
parsing runs on the other core.

Errors: ChainMismatch (a log or header that does not link — the caller looks for a reorg),
DecodeError (an ABI out of date: stop), RpcError subclasses (retried by the caller). The child
returns each as the first class of its MRO that the parent knows (`_ERRORS`), its message and code;
anything else (a bug, an answer that broke a parser) comes back as TransientRpcError naming its class,
so a failed fetch is always a failed iteration (retried), never an unexpected error ending the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import structlog

from core.logs import configure_logging
from indexer.chain import BlockRef, ChainMismatch, SpanPolicy, bloom_may_contain, next_span, split_span
from indexer.decode import DecodeError, Event
from indexer.rawlogs import CLASSES, RawDecoder
from indexer.rpc import (
    BadAnswer,
    FatalRpcError,
    RangeTooLarge,
    RateLimited,
    RawLog,
    RetryPolicy,
    Rpc,
    TimedOut,
    TransientRpcError,
)
from indexer.runtime import tune_gc
from indexer.spawn import Child, discard, spawn_fetch_child

log = structlog.get_logger("indexer.fetch")


@dataclasses.dataclass(slots=True)
class Prepared:
    """One fetched range, ready to fold and write."""

    blocks: range
    headers: dict[int, BlockRef]
    events: list[Event]
    raw: dict[str, bytes]  # COPY text payload per raw event table
    span: int  # the span the next range should use (grown, shrunk or split by this one)
    spans: list[int]  # sizes of the eth_getLogs calls made (a refused range is split)


class RangeFetcher:
    """eth_getLogs for a range (split while the provider refuses it), the headers the commit needs,
    link checks, decoding and the raw COPY payloads."""

    def __init__(
        self,
        rpc: Rpc,
        chain_id: int,
        addresses: Sequence[str],
        policy: SpanPolicy,
        on_split: Callable[..., None],
    ) -> None:
        """on_split(kind=..., **fields) hears of what the answers needed: "split" (a range refused),
        "duplicates" (repeated logs dropped), "recovered" (logs a range answer missed, found by the
        bloom check)."""
        self.rpc = rpc
        self.addresses = list(addresses)
        self.address_bytes = [bytes.fromhex(x[2:]) for x in self.addresses]
        self.decoder = RawDecoder(chain_id, {self.addresses[0]: "OpinionMarket", self.addresses[1]: "CreatorShares"})
        self.policy = policy
        self.on_split = on_split

    async def _logs(
        self, a: int, b: int, span: int, spans: list[int], ends: dict[int, BlockRef]
    ) -> tuple[list[RawLog], int]:
        """Raw logs of a..b and the span to continue with; `ends` gets the header of each answered
        range's last block, as the answering node sent it (rpc.get_logs_checked)."""
        try:
            logs, end = await self.rpc.get_logs_checked(a, b, self.addresses)
            spans.append(b - a + 1)
            if end is not None:
                ends[b] = end
            self.on_split(kind="fetched", to_block=b)  # progress within a long job (the watchdog's)
            return logs, span
        except (RangeTooLarge, TransientRpcError) as exc:
            size = b - a + 1
            suggested = exc.suggested_span if isinstance(exc, RangeTooLarge) else None
            if not isinstance(exc, RangeTooLarge):
                # A JSON-RPC error we could not classify, still failing after the retries: on a range
                # it may be a range cap in a wording we do not know, so narrow; so is a range that
                # timed out twice (too heavy for this provider). Anything else (HTTP errors, rate
                # limits, a single block) goes back to the caller.
                if (exc.code is None and not isinstance(exc, TimedOut)) or isinstance(exc, RateLimited) or size <= 1:
                    raise
            elif size <= 1:
                # every provider refused one block (its result cap, or an answer above max_response_mb):
                # a provider's fault as often as the block's; retried, never fatal
                raise TransientRpcError(
                    f"eth_getLogs of block {a}: refused by every provider: {exc}", exc.code
                ) from None
            span = split_span(min(span, size), suggested)
            step = max(1, min(span, (size + 1) // 2 if suggested is None else span))
            self.on_split(kind="split", from_block=a, to_block=b, new_span=step, error=str(exc)[:160])
            out: list[RawLog] = []
            for start in range(a, b + 1, step):
                part, span = await self._logs(start, min(b, start + step - 1), span, spans, ends)
                out.extend(part)
            return out, span

    async def _confirm_empty(self, header: BlockRef) -> list[RawLog]:
        """Our logs of a block whose logsBloom says "maybe" but whose range answer had none: read
        again by hash (EIP-234: a node without the block answers an error) and, when still empty,
        from a node proven to have the block (rpc.confirmed_logs_raw: its receipts, or by hash with
        eth_getBlockByHash in one batch): a bloom false positive is accepted only then."""
        logs = await self.rpc.maybe_block_logs_raw(header, self.addresses)
        if logs:
            self.on_split(kind="recovered", block_number=header.number, logs=len(logs))
        return logs

    async def fetch_packed(self, blocks: range, span: int, finalized: int) -> tuple[Any, ...]:
        """The range in the form that crosses the pipe (see unpack)."""
        a, b = blocks.start, blocks.stop - 1
        spans: list[int] = []
        ends: dict[int, BlockRef] = {}
        raw_logs, span = await self._logs(a, b, span, spans, ends)
        try:
            raw_logs, dropped = dedupe(raw_logs)
        except ValueError as exc:  # not hex (msgspec already checked that every field is a string)
            raise _malformed(a, b, exc) from None
        if dropped:
            self.on_split(kind="duplicates", from_block=a, to_block=b, duplicates=dropped)
        numbers = {int(r.blockNumber, 16) for r in raw_logs}
        # every answered (sub-)range's end too: a split range's parts may come from different nodes; the
        # finalized block itself: the floor a reorg above it is rolled back to (review s21 hr)
        want = {a, b} | numbers | ends.keys() | set(range(max(a, finalized), b + 1))
        headers = await self.rpc.headers(sorted(want), require=True)
        missing = want - headers.keys()
        if missing:
            raise TransientRpcError(f"node has no header for {len(missing)} block(s) from {min(missing)}")
        prev: BlockRef | None = None
        for n in sorted(headers):
            h = headers[n]
            if prev is not None and n == prev.number + 1 and h.parent_hash != prev.hash:
                raise ChainMismatch(f"block {n} does not link to block {prev.number}")
            prev = h
        for n, end in ends.items():
            if n in headers and headers[n].hash != end.hash:
                raise ChainMismatch(f"the node that answered eth_getLogs up to block {n} is on another branch")
        # Unfinalized blocks (every header is at hand): a bloom that may hold our logs where the range
        # answer had none is read again, never committed empty on trust; so is a block whose header
        # does not hash to its hash (its bloom may not be its own).
        extra: list[RawLog] = []
        for n in range(max(a, finalized + 1), b + 1):
            h = headers[n]
            if n not in numbers and (not h.sealed or bloom_may_contain(h.bloom, self.address_bytes)):
                extra += await self._confirm_empty(h)
        if extra:
            raw_logs, _ = dedupe([*raw_logs, *extra])
        try:
            events, raw = self.decoder.decode(raw_logs, headers)
        except (DecodeError, ChainMismatch):
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise _malformed(a, b, exc) from None
        return (
            (blocks.start, blocks.stop),
            [(h.number, h.hash, h.parent_hash, h.time, h.bloom) for h in headers.values()],
            events,
            raw,
            clamp(next_span(span, len(raw_logs), self.policy), self.rpc.span_limit()),
            spans,
        )

    async def fetch(self, blocks: range, span: int, finalized: int) -> Prepared:
        return unpack(await self.fetch_packed(blocks, span, finalized))


def clamp(span: int, limit: int | None) -> int:
    """The next span, within the widest range some provider accepts (when all stated caps)."""
    return span if limit is None else max(1, min(span, limit))


def dedupe(raw_logs: list[RawLog]) -> tuple[list[RawLog], int]:
    """Logs in (block, log index) order, each identity once: a provider that repeats a log (a retried
    upstream, a load balancer merging answers) must not make the commit fail on a primary key. Two
    logs with one position but different block hashes come from two branches: ChainMismatch; with one
    block hash but another address, topics, data or transaction, the answer contradicts itself:
    TransientRpcError (asked again; keeping either copy committed a forged one for good, review h2).
    Returns the logs and how many duplicates were dropped (pure)."""
    last_b = last_i = -1
    for r in raw_logs:  # the usual case, checked cheaply: strictly increasing (block, log index)
        b = int(r.blockNumber, 16)
        i = int(r.logIndex, 16)
        if b < last_b or (b == last_b and i <= last_i):
            break
        last_b, last_i = b, i
    else:
        return raw_logs, 0
    seen: dict[tuple[int, int], RawLog] = {}
    for key, r in (((int(r.blockNumber, 16), int(r.logIndex, 16)), r) for r in raw_logs):
        had = seen.get(key)
        if had is None:
            seen[key] = r
        elif had.blockHash.lower() != r.blockHash.lower():
            raise ChainMismatch(f"two logs at block {key[0]} index {key[1]} with different block hashes")
        elif _content(had) != _content(r):  # one answer contradicts itself: neither copy is trusted (review h2)
            raise TransientRpcError(
                f"eth_getLogs answer holds two different logs at block {key[0]} index {key[1]}"
                " (address, topics, data or transaction differ): asked again"
            )
    out = [seen[k] for k in sorted(seen)]
    return out, len(raw_logs) - len(out)


def _content(r: RawLog) -> tuple[str, tuple[str, ...], str, str]:
    return r.address.lower(), tuple(t.lower() for t in r.topics), r.data.lower(), r.transactionHash.lower()


def _malformed(a: int, b: int, exc: Exception) -> TransientRpcError:
    return TransientRpcError(f"eth_getLogs {a}..{b}: malformed log object from the node ({type(exc).__name__}: {exc})")


# ---------------------------------------------------------------- the child process

_ERRORS: dict[str, type[Exception]] = {
    "ChainMismatch": ChainMismatch,
    "DecodeError": DecodeError,
    "FatalRpcError": FatalRpcError,
    "RangeTooLarge": RangeTooLarge,
    "RateLimited": RateLimited,
    "TimedOut": TimedOut,
    "BadAnswer": BadAnswer,
    "TransientRpcError": TransientRpcError,
    "RpcError": TransientRpcError,
}


def error_reply(exc: BaseException) -> tuple[str, str, int | None]:
    """How the child sends a failure: the first class of its MRO the parent knows (a subclass such as
    ReorgTooDeep arrives as ChainMismatch), its message and code. An unknown one (RecursionError,
    ValueError: a bug, or an answer a parser did not expect) is sent as TransientRpcError naming its
    class, with its text kept."""
    code = getattr(exc, "code", None)
    code = code if isinstance(code, int) else None
    for cls in type(exc).__mro__:
        if cls.__name__ in _ERRORS:
            return cls.__name__, str(exc), code
    return "TransientRpcError", f"{type(exc).__name__} in the fetch process: {exc}", code


def error_of(name: str, message: str, code: int | None) -> Exception:
    """The parent's exception for the child's error_reply (an unknown name: TransientRpcError)."""
    cls = _ERRORS.get(name)
    if cls is None:
        return TransientRpcError(f"{name}: {message}", code)
    if issubclass(cls, RangeTooLarge | RateLimited | TransientRpcError | FatalRpcError):
        return cls(message, code)
    return cls(message)


def unpack(data: tuple[Any, ...]) -> Prepared:
    """Events cross the pipe as (class index, field values): pickling slotted dataclasses goes through
    __reduce_ex__ and costs several times more than a tuple."""
    (start, stop), headers, events, raw, span, spans = data
    classes = CLASSES
    return Prepared(
        range(start, stop),
        {h[0]: BlockRef(*h) for h in headers},
        [classes[i](*values) for i, values in events],
        raw,
        span,
        spans,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ChildConfig:
    urls: tuple[str, ...]
    timeout: float
    chain_id: int
    addresses: tuple[str, ...]
    policy: SpanPolicy
    max_logs_bytes: int = 32 << 20
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    log_level: str = "info"  # the parent's [indexer].log_level: the child logs to stderr like it


PROGRESS_S = 1.0  # how often the child reports its providers' answers while jobs run


def _child_main(fd: int) -> None:
    """`python -m indexer.fetch FD`: the first message on the socket is the ChildConfig."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop (it closes the pipe)
    conn = Connection(fd)
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
        cfg = conn.recv()
        configure_logging(cfg.log_level)
        tune_gc()
        asyncio.run(_child_loop(conn, cfg))


async def _child_loop(conn: Connection, cfg: ChildConfig) -> None:
    loop = asyncio.get_running_loop()
    observed: list[tuple[str, float, str]] = []
    splits: list[dict[str, Any]] = []
    jobs: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()

    def readable() -> None:
        try:
            jobs.put_nowait(conn.recv())
        except (EOFError, OSError):
            jobs.put_nowait(None)
            loop.remove_reader(conn.fileno())

    loop.add_reader(conn.fileno(), readable)
    async with Rpc(cfg.urls, cfg.timeout, lambda *o: observed.append(o), cfg.max_logs_bytes, cfg.retry) as rpc:
        fetcher = RangeFetcher(rpc, cfg.chain_id, cfg.addresses, cfg.policy, lambda **kw: splits.append(kw))
        await rpc.learn_seals()

        async def run(job_id: int, start: int, stop: int, span: int, finalized: int) -> None:
            try:
                packed = await fetcher.fetch_packed(range(start, stop), span, finalized)
                reply: tuple[Any, ...] = ("ok", job_id, packed)
            except Exception as exc:  # every failure goes back to the parent, which decides
                reply = ("error", job_id, *error_reply(exc))
            reply = (*reply, observed[:], splits[:])
            observed.clear()
            splits.clear()
            conn.send(reply)

        async def progress() -> None:
            """What the providers answered so far, every PROGRESS_S while a job runs: the parent's stall
            watchdog counts answers, and a long job through a slow provider (hundreds of capped ranges)
            sent them only with its reply, so a degraded but moving backfill was called stuck, exit 4
            (review h2)."""
            while True:
                await asyncio.sleep(PROGRESS_S)
                if observed or splits:
                    conn.send(("progress", None, observed[:], splits[:]))
                    observed.clear()
                    splits.clear()

        reporter = asyncio.create_task(progress())
        tasks: dict[int, asyncio.Task[None]] = {}
        while (job := await jobs.get()) is not None:
            if job[0] == "cancel":  # the parent gave up on it (a failed iteration): stop asking the node
                gone = tasks.pop(job[1], None)
                if gone is not None:
                    gone.cancel()
                continue
            t = tasks[job[0]] = asyncio.create_task(run(*job))
            t.add_done_callback(functools.partial(_forget, tasks, job[0]))
        for t in tasks.values():
            t.cancel()
        reporter.cancel()


def _forget(tasks: dict[int, asyncio.Task[None]], job_id: int, done: asyncio.Task[None]) -> None:
    if tasks.get(job_id) is done:
        del tasks[job_id]


class FetchProcess:
    """RangeFetcher in a child process; `fetch` may be awaited by several tasks at once.

    The child is started on first use and again after it died (its pending fetches then fail with
    TransientRpcError, which the indexer retries). It exits when the pipe closes, so it does not
    outlive a parent that was killed."""

    def __init__(
        self,
        cfg: ChildConfig,
        observe: Callable[[str, float, str], None],
        on_split: Callable[..., None],
        on_start: Callable[[], None] = lambda: None,
        early: Child | None = None,
    ) -> None:
        self.cfg = cfg
        self.early = early
        self.observe = observe
        self.on_split = on_split
        self.on_start = on_start
        self.proc: Any = None
        self.conn: Connection | None = None
        self.pending: dict[int, asyncio.Future[Prepared]] = {}
        self.next_id = 0

    def _start(self) -> None:
        if self.proc is not None:  # a child that died: reap it
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1)
        # the one `python -m indexer` started before its imports, else a new one
        early, self.early = self.early, None
        if early is not None and early[0].poll() is None:
            self.proc, ours = early
        else:
            discard(early)
            self.proc, ours = spawn_fetch_child()
        parent = Connection(ours.detach())
        parent.send(self.cfg)
        self.conn = parent
        asyncio.get_running_loop().add_reader(parent.fileno(), self._readable)
        log.info("fetch_process_started", pid=self.proc.pid)
        self.on_start()

    def _readable(self) -> None:
        assert self.conn is not None
        try:
            reply = self.conn.recv()
        except (EOFError, OSError):
            self._lost("the fetch process exited")
            return
        status, job_id = reply[0], reply[1]
        for o in reply[-2]:
            self.observe(*o)
        for s in reply[-1]:
            self.on_split(**s)
        if status == "progress":  # answers so far of jobs still running
            return
        fut = self.pending.pop(job_id, None)
        if fut is None or fut.done():
            return
        if status == "ok":
            fut.set_result(unpack(reply[2]))
        else:
            fut.set_exception(error_of(reply[2], reply[3], reply[4]))

    def _lost(self, why: str, expected: bool = False) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(TransientRpcError(why))
        self.pending.clear()
        if not expected:
            log.warning("fetch_process_lost", reason=why)

    def warm(self) -> None:
        """Starts the child now rather than on the first fetch."""
        if self.conn is None:
            self._start()

    async def fetch(self, blocks: range, span: int, finalized: int) -> Prepared:
        if self.conn is None:
            self._start()
        assert self.conn is not None
        self.next_id += 1
        job_id = self.next_id
        fut: asyncio.Future[Prepared] = asyncio.get_running_loop().create_future()
        self.pending[job_id] = fut
        try:
            self.conn.send((job_id, blocks.start, blocks.stop, span, finalized))
        except OSError:
            self._lost("the fetch process is gone")
            raise TransientRpcError("the fetch process is gone") from None
        try:
            return await fut
        except asyncio.CancelledError:
            # Otherwise the child goes on fetching (and retrying against a provider that may be the
            # reason for the cancel) for a result nobody waits for; a failing provider piled them up.
            if (fut.cancelled() or not fut.done()) and self.conn is not None:  # cancelling us cancels fut
                with contextlib.suppress(OSError):
                    self.conn.send(("cancel", job_id))
            raise
        finally:
            self.pending.pop(job_id, None)

    async def close(self) -> None:
        discard(self.early)
        self.early = None
        self._lost("closed", expected=True)
        if self.proc is not None:
            proc, self.proc = self.proc, None
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=2)


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))
