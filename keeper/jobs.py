"""The keeper's scheduled work. Each job gathers state (indexer rows in PostgreSQL, then the
contract state by eth_call — decision 7: the database finds work, the chain confirms it), calls
the pure deciders in keeper.decide, simulates every transaction (eth_estimateGas) and hands the
survivors to the transaction manager, which records them before broadcasting.

Jobs: resolve (proposes outcomes of due markets), finalize (undisputed proposals whose challenge window
ended; disputes are alerted, never finalized), expire (resolveExpired past end + resolution window; a
disputed market also past its arbitration deadline), distribute (daily dividends), aggregate (agg.* tables),
warm (Redis, through the API itself, core.warm), notify (ending-soon notifications, via the outbox), track (the tx
manager). One item that cannot be encoded, checked or simulated is marked failed and skipped (ItemFailure).
An item the node did not answer for (a rate limit, a timeout: RpcError.node_trouble) is an ItemFailure too,
`transient`: counted and recorded like any, but its queue entry stays queued and the next run asks again —
for distribute, whose period is a day, the run counts it `deferred` and the daemon retries the period
(review h6: such a creator was skipped silently, or recorded as a revert, for the whole day).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from core.contracts import Deployment
from keeper import decide, store
from keeper.abi import decode_result, encode_call, error_name
from keeper.decide import OUTCOME_NAMES
from keeper.metrics import Metrics
from keeper.rpc import Rpc, RpcError, hx, to_bytes, to_int
from keeper.settings import Settings
from keeper.store import Fence, FencedError
from keeper.tx import TxManager, TxRequest

log = structlog.get_logger("keeper.jobs")


@dataclasses.dataclass(slots=True)
class Context:
    settings: Settings
    pool: asyncpg.Pool
    rpc: Rpc
    deployment: Deployment
    metrics: Metrics
    tx: TxManager
    signer_address: str
    epoch: Callable[[], int | None]
    dry_run: bool = False
    plan: Callable[[dict[str, Any]], None] = lambda _row: None

    @property
    def chain_id(self) -> int:
        return self.settings.chain.chain_id

    def fence(self) -> Fence:
        """The fence of this process's leadership, for writes that must not outlive it (FencedError
        when there is none: the writes then fail as a stale leader's do)."""
        epoch = self.epoch()
        if epoch is None:
            raise FencedError("not the leader: no fencing epoch")
        return Fence(self.chain_id, epoch)


async def chain_time(rpc: Rpc) -> int:
    block = await rpc.call("eth_getBlockByNumber", "latest", False)
    return to_int(block["timestamp"])


async def _eth_calls(rpc: Rpc, calls: list[tuple[str, bytes]], block: str = "latest") -> list[bytes | RpcError]:
    results = await rpc.batch([("eth_call", [{"to": to, "data": hx(data)}, block]) for to, data in calls])
    return [r if isinstance(r, RpcError) else to_bytes(r) for r in results]


async def _final_rivals(ctx: Context, entries: list[tuple[int, str, int]]) -> list[tuple[int, str]]:
    """Of the queue entries a rival's proposal or resolution would close ((queue id, reason, market id)),
    those whose market is proposed or resolved in the finalized block: closing an entry is for good, and a
    rival's transaction in the latest block may be reorged away (review s21 hk: the operator's outcome was
    then never proposed, and the market ended INVALID). The others stay queued for a later run."""
    if not entries:
        return []
    om = ctx.deployment.opinion_market
    calls = [(om, encode_call("OpinionMarket", "getMarket", market_id)) for _, _, market_id in entries]
    try:
        results = await _eth_calls(ctx.rpc, calls, "finalized")
    except RpcError as exc:  # the node did not answer: kept queued this run, the run's proposals go on (hf2)
        log.warning("queue_entries_kept", entries=len(entries), error=str(exc)[:200])
        return []
    if all(isinstance(r, RpcError) for r in results):
        # a node without the tag: head - chain.finality_depth, as the tracker does (review s21 hu: the entries
        # stayed queued for ever)
        try:
            head = int(await ctx.rpc.call("eth_blockNumber"), 16)
        except (RpcError, TypeError, ValueError):
            head = None
        if head is not None:
            with contextlib.suppress(RpcError):
                results = await _eth_calls(ctx.rpc, calls, hex(max(0, head - ctx.settings.chain.finality_depth)))
    final: list[tuple[int, str]] = []
    for (queue_id, reason, market_id), res in zip(entries, results, strict=True):
        try:
            status = int(decode_result("OpinionMarket", "getMarket", res)[4]) if isinstance(res, bytes) else None
        except Exception:  # undecodable: not proven final, asked again next run
            status = None
        if status is not None and status != decide.STATUS_OPEN:
            final.append((queue_id, reason))
        else:
            log.info("queue_entry_kept", queue_id=queue_id, market_id=market_id, reason=f"{reason}, not final yet")
    return final


@dataclasses.dataclass(frozen=True, slots=True)
class ItemFailure:
    """One work item that could not be encoded, checked or simulated: marked failed, the job goes on."""

    stage: str  # encode | check | simulate | sign (a fixed vocabulary: it is a metric label)
    job_key: str
    queue_id: int | None
    error: str
    transient: bool = False  # the node did not answer (RpcError.node_trouble): asked again by the next run


def _unanswered(stage: str, job_key: str, queue_id: int | None, exc: RpcError | str) -> ItemFailure:
    """The item whose read or simulation the node did not answer (rate limit, timeout, overload)."""
    return ItemFailure(stage, job_key, queue_id, f"node did not answer: {str(exc)[:200]}", transient=True)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


async def _record_failures(ctx: Context, job: str, failed: list[ItemFailure]) -> None:
    """Counts, logs and records each failed item (keeper.decisions action `failed`; its queue entry,
    if any, becomes `failed` with the error so the operator sees it in `keeper queue --all`)."""
    for f in failed:
        ctx.metrics.item_failures.labels(job=job, stage=f.stage).inc()
        log.error(
            "item_failed",
            job=job,
            stage=f.stage,
            job_key=f.job_key,
            queue_id=f.queue_id,
            error=f.error,
            transient=f.transient,
            **({"action": "asked again by the next run"} if f.transient else {}),
        )
    if ctx.dry_run:
        for f in failed:
            ctx.plan({"job": job, "job_key": f.job_key, "action": "failed", "reason": f"{f.stage}: {f.error}"})
        return
    if not failed:
        return
    await store.insert_decisions(
        ctx.pool,
        ctx.chain_id,
        ctx.epoch(),
        [(job, f.job_key, "failed", f"{f.stage}: {f.error}", {"queue_id": f.queue_id}) for f in failed],
    )
    await store.fail_queue_entries(  # a transient failure leaves its entry queued: the next run tries again
        ctx.pool, ctx.fence(), [(f.queue_id, f"{f.stage}: {f.error}") for f in failed if f.queue_id and not f.transient]
    )


# ------------------------------------------------------------------------------- resolve


async def resolve(ctx: Context, now: int | None = None) -> dict[str, int]:
    """Proposes outcomes of due markets from the operator queue or a price-feed rule (proposeOutcome: final
    after the challenge window, through the finalize job); reports overdue ones."""
    now = await chain_time(ctx.rpc) if now is None else now
    om = ctx.deployment.opinion_market
    async with store.connection(ctx.pool) as conn:
        rows = await conn.fetch(
            """
            WITH due AS (
                SELECT market_id FROM idx.markets
                 WHERE chain_id = $1 AND status = 'open' AND end_time <= to_timestamp($2)
                UNION
                SELECT market_id FROM keeper.resolution_queue WHERE chain_id = $1 AND status = 'queued'
            )
            SELECT d.market_id, q.id AS queue_id, q.outcome AS queue_outcome,
                   r.feed, r.comparison, r.threshold, r.outcome_if_true, r.outcome_if_false,
                   EXISTS (SELECT 1 FROM keeper.txs t WHERE t.chain_id = $1 AND t.job_key = 'resolve:' || d.market_id
                            AND t.status <> 'dropped'
                            -- after a revert, only an operator's new entry sends again (no automatic retry)
                            AND (t.status <> 'reverted' OR q.id IS NULL)) AS in_ledger,
                   EXISTS (SELECT 1 FROM keeper.txs t WHERE t.chain_id = $1 AND t.job_key = 'expire:' || d.market_id
                            AND t.status = 'pending') AS expiring
              FROM due d
              LEFT JOIN keeper.resolution_queue q
                     ON q.chain_id = $1 AND q.market_id = d.market_id AND q.status = 'queued'
              LEFT JOIN keeper.price_feed_rules r ON r.chain_id = $1 AND r.market_id = d.market_id
             ORDER BY d.market_id
            """,
            ctx.chain_id,
            now,
        )
    # a queue entry added while another transaction for the market is already live (a feed rule or an
    # earlier entry) can never be sent: say so instead of leaving it queued forever
    late = [(r["queue_id"], "already_in_ledger") for r in rows if r["in_ledger"] and r["queue_id"] is not None]
    if late and not ctx.dry_run:
        await store.skip_queue_entries(ctx.pool, ctx.fence(), late)
    # an expiry not mined yet would make a proposal revert (and the reverse, in expire): wait a pass
    expiring = sum(1 for r in rows if r["expiring"] and not r["in_ledger"])
    rows = [r for r in rows if not r["in_ledger"] and not r["expiring"]]
    counts = {
        "candidates": len(rows),
        "sent": 0,
        "skipped": len(late),
        "failed": 0,
        "overdue": 0,
        "waiting": expiring,
    }
    if not rows:
        await _refresh_overdue(ctx, [])
        return counts
    # one row that cannot be encoded or decoded is marked failed and skipped; the others go on
    failed: list[ItemFailure] = []
    checks: list[tuple[asyncpg.Record, bytes]] = []
    for r in rows:
        try:
            checks.append((r, encode_call("OpinionMarket", "getMarket", r["market_id"])))
        except Exception as exc:
            failed.append(ItemFailure("encode", f"resolve:{r['market_id']}", r["queue_id"], _describe(exc)))
    rows = [r for r, _ in checks]
    results = await _eth_calls(ctx.rpc, [(om, data) for _, data in checks])
    views: list[decide.MarketView] = []
    decisions: list[tuple[str, str, str, str, dict[str, Any]]] = []
    skipped_queue: list[tuple[int, str]] = []
    rivals: list[tuple[int, str, int]] = []  # entries a rival's proposal or resolution closes, once final
    for r, res in zip(rows, results, strict=True):
        if isinstance(res, RpcError) and res.node_trouble:
            failed.append(_unanswered("check", f"resolve:{r['market_id']}", r["queue_id"], res))
            continue
        if isinstance(res, RpcError):
            reason = error_name(res.revert_data)
            decisions.append(("resolve", f"resolve:{r['market_id']}", "skipped", reason, {}))
            if r["queue_id"] is not None and reason == "MarketNotFound":
                skipped_queue.append((r["queue_id"], reason))
            continue
        try:
            _c, end_time, _y, _n, status, _o, _lw, _po, _ce = decode_result("OpinionMarket", "getMarket", res)
        except Exception as exc:
            failed.append(ItemFailure("check", f"resolve:{r['market_id']}", r["queue_id"], _describe(exc)))
            continue
        rule = None
        if r["feed"] is not None:
            rule = decide.FeedRule(
                bytes(r["feed"]), r["comparison"], int(r["threshold"]), r["outcome_if_true"], r["outcome_if_false"]
            )
        queued = None if r["queue_id"] is None else decide.QueueEntry(r["queue_id"], r["queue_outcome"])
        st = int(status)
        views.append(
            decide.MarketView(r["market_id"], int(end_time), st == decide.STATUS_RESOLVED, queued, rule, status=st)
        )
    # feed rounds only where a rule will be evaluated
    need_feed = [
        v
        for v in views
        if v.rule is not None and v.queued is None and v.status == decide.STATUS_OPEN and now >= v.end_time
    ]
    rounds, feed_failed = await _feed_rounds(ctx, need_feed)
    failed += feed_failed
    views = [dataclasses.replace(v, feed_round=rounds.get(v.market_id)) for v in views]

    k = ctx.settings.keeper
    resolves: list[decide.Resolve] = []
    overdue: list[decide.Overdue] = []
    for v in views:
        action = decide.decide_resolution(v, now, k.grace_period_s, k.feed_max_staleness_s)
        if isinstance(action, decide.Resolve):
            resolves.append(action)
        elif isinstance(action, decide.Skip):
            counts["skipped"] += 1
            ctx.metrics.skipped_total.labels(job="resolve", reason=action.reason).inc()
            if v.queued is not None:
                rivals.append((v.queued.id, action.reason, v.market_id))
                decisions.append(("resolve", action.key, "skipped", action.reason, {"queue_id": v.queued.id}))
        elif isinstance(action, decide.Overdue):
            overdue.append(action)
        else:
            counts["waiting"] += 1
    counts["overdue"] = len(overdue)
    await _refresh_overdue(ctx, overdue)

    reqs: list[TxRequest] = []
    encoded: list[tuple[decide.Resolve, bytes]] = []
    for a in resolves:
        try:
            encoded.append((a, encode_call("OpinionMarket", "proposeOutcome", a.market_id, a.outcome)))
        except Exception as exc:
            failed.append(ItemFailure("encode", f"resolve:{a.market_id}", a.queue_id, _describe(exc)))
    if encoded:
        resolves = [a for a, _ in encoded]
        datas = [d for _, d in encoded]
        sims = await ctx.tx.simulate_many([(bytes.fromhex(om[2:]), d, 0) for d in datas])
        for a, data, sim in zip(resolves, datas, sims, strict=True):
            key = f"resolve:{a.market_id}"
            if sim.node_trouble:
                failed.append(_unanswered("simulate", key, a.queue_id, sim.reason))
                continue
            if not sim.ok:
                counts["skipped"] += 1
                ctx.metrics.skipped_total.labels(job="resolve", reason="simulation_reverted").inc()
                decisions.append(
                    ("resolve", key, "skipped", f"simulation: {sim.reason}", {"outcome": a.outcome, "source": a.source})
                )
                if sim.reason in ("MarketAlreadyResolved", "MarketNotOpen"):  # another resolver was first
                    if a.queue_id is not None:
                        reason = "already_resolved" if sim.reason == "MarketAlreadyResolved" else "already_proposed"
                        rivals.append((a.queue_id, reason, a.market_id))
                elif sim.refused:
                    # The contract says no (a revoked role, a paused contract): report it, a queue entry and a
                    # price-feed rule alike; a rule's refusal was only a skip, so nothing alerted until the
                    # expire job voided the market INVALID (review s15)
                    failed.append(ItemFailure("simulate", key, a.queue_id, f"simulation reverted: {sim.reason}"))
                log.warning("resolve_simulation_failed", market_id=a.market_id, reason=sim.reason)
                continue
            reqs.append(
                TxRequest(
                    job="resolve",
                    job_key=key,
                    to=bytes.fromhex(om[2:]),
                    data=data,
                    gas_limit=sim.gas_limit,
                    market_id=a.market_id,
                    queue_id=a.queue_id,
                )
            )
            plan = {
                "job": "resolve",
                "job_key": key,
                "market_id": a.market_id,
                "outcome": OUTCOME_NAMES[a.outcome],
                "source": a.source,
                "gas_limit": sim.gas_limit,
            }
            if ctx.dry_run:
                ctx.plan(plan)
                log.info("tx_planned", **plan)
    counts["failed"] = len(failed)
    await _record_failures(ctx, "resolve", failed)
    if not ctx.dry_run:
        await store.insert_decisions(ctx.pool, ctx.chain_id, ctx.epoch(), decisions)
        skipped_queue += await _final_rivals(ctx, rivals)
        await store.skip_queue_entries(ctx.pool, ctx.fence(), skipped_queue)
        sent = await ctx.tx.submit(reqs)
        counts["sent"] = len(sent)
    else:
        for d in decisions:
            ctx.plan({"job": d[0], "job_key": d[1], "action": d[2], "reason": d[3]})
    log.info("resolve_finished", **counts)
    return counts


async def _feed_rounds(
    ctx: Context, views: list[decide.MarketView]
) -> tuple[dict[int, decide.FeedRound], list[ItemFailure]]:
    """The first round of each rule's feed published at or after the market's end time: walks back
    round ids from the latest until the round before it is older than end time (so the round found is
    known to be the first; a market whose feed has no round since its end time gets none yet). A walk
    that cannot show that (the previous round unreadable, as at a Chainlink phase change, or
    `feed_max_rounds_back` reached) gives none: never a guess. A feed whose answer is not an
    AggregatorV3 round (a rule bound to another kind of contract) fails that market alone, naming the
    market and the feed; the other rules are read on.

    Each distinct feed's latest round is read once, all in one batch; a walk back reads each (feed,
    round) once a run, so many markets on one feed cost one walk, not one each."""
    out: dict[int, decide.FeedRound] = {}
    failed: list[ItemFailure] = []
    k = ctx.settings.keeper
    answers: dict[tuple[str, int | None], Any] = {}  # (feed, round id; None = latest) -> bytes | RpcError
    feeds = sorted({hx(v.rule.feed) for v in views if v.rule is not None})
    latest = hx(encode_call("MockPriceFeed", "latestRoundData"))
    if feeds:
        with contextlib.suppress(RpcError):  # then each is read alone below
            got = await ctx.rpc.batch([("eth_call", [{"to": f, "data": latest}, "latest"]) for f in feeds])
            answers.update(((f, None), r) for f, r in zip(feeds, got, strict=True) if isinstance(r, str | RpcError))

    async def read(feed: str, round_id: int | None) -> Any:
        """The eth_call answer (hex) for `round_id` of `feed`, read once a run; its RpcError raised."""
        if (feed, round_id) not in answers:  # not read yet, or left unanswered by the batch
            data = latest if round_id is None else hx(encode_call("MockPriceFeed", "getRoundData", round_id))
            try:
                r = await ctx.rpc.call("eth_call", {"to": feed, "data": data}, "latest")
            except RpcError as exc:
                r = exc
            answers[(feed, round_id)] = r
        r = answers[(feed, round_id)]
        if isinstance(r, RpcError):
            raise r
        return r

    # Walks one by one (up to feed_max_rounds_back calls a market), before anything is sent: bounded to
    # half the job's timeout, so a slow node delays some rules to the next run instead of timing the
    # whole run out (no proposal sent at all; five in a row halt the keeper). A random order: the same
    # markets are not the ones left over every run.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + k.job_timeout_s / 2
    views = random.sample(views, len(views))
    for i, v in enumerate(views):
        if loop.time() > deadline:
            log.warning("feed_reads_deferred", read=i, deferred=len(views) - i, budget_s=k.job_timeout_s / 2)
            break
        assert v.rule is not None
        feed = hx(v.rule.feed)
        step = "latestRoundData"
        try:
            raw = await read(feed, None)
        except RpcError as exc:
            if exc.node_trouble:
                failed.append(_unanswered("check", f"resolve:{v.market_id}", None, exc))
            else:
                log.warning("feed_unreadable", market_id=v.market_id, reason=error_name(exc.revert_data))
            continue
        first: decide.FeedRound | None = None  # the first round at or after end time, once shown to be
        try:
            round_id, answer, _started, updated, _ans = decode_result("MockPriceFeed", step, to_bytes(raw))
            steps = 0
            while updated >= v.end_time:
                if round_id <= 1:  # the feed's first round: nothing before it
                    first = decide.FeedRound(int(round_id), int(answer), int(updated))
                    break
                if steps >= k.feed_max_rounds_back:
                    break
                steps += 1
                step = f"getRoundData({round_id - 1})"
                try:
                    raw = await read(feed, round_id - 1)
                except RpcError:
                    break
                prev = decode_result("MockPriceFeed", "getRoundData", to_bytes(raw))
                if prev[3] < v.end_time:  # the round before is older than end time: this one is the first
                    first = decide.FeedRound(int(round_id), int(answer), int(updated))
                    break
                round_id, answer, _started, updated, _ans = prev
        except Exception as exc:
            size = f"{len(raw) // 2 - 1} bytes" if isinstance(raw, str) else f"{raw!r:.80}"
            error = (
                f"market {v.market_id}: feed {feed} answered {step} with {size} that are not an"
                f" AggregatorV3 round ({_describe(exc)}); bind the market to a price feed with `keeper rule"
                f" {v.market_id} --feed 0x…` or queue its outcome with `keeper resolve {v.market_id}`"
            )
            failed.append(ItemFailure("check", f"resolve:{v.market_id}", None, error))
            continue
        if first is not None:
            out[v.market_id] = first
    return out, failed


async def _refresh_overdue(ctx: Context, overdue: list[decide.Overdue]) -> None:
    ctx.metrics.overdue.set(len(overdue))
    for o in overdue:
        log.warning("market_overdue", market_id=o.market_id, overdue_s=o.overdue_s, reason=o.reason)
    if ctx.dry_run:
        return
    async with store.connection(ctx.pool) as conn, conn.transaction():
        ids = [o.market_id for o in overdue]
        await conn.execute(
            "DELETE FROM keeper.overdue_markets WHERE chain_id = $1 AND NOT (market_id = ANY($2::bigint[]))",
            ctx.chain_id,
            ids,
        )
        if overdue:
            await conn.executemany(
                """
                INSERT INTO keeper.overdue_markets (chain_id, market_id, end_time, reason)
                VALUES ($1, $2, now() - make_interval(secs => $3), $4)
                ON CONFLICT (chain_id, market_id) DO UPDATE SET last_reported_at = now(), reason = EXCLUDED.reason
                """,
                [(ctx.chain_id, o.market_id, float(o.overdue_s), o.reason) for o in overdue],
            )


# ------------------------------------------------------------------- finalize, dispute, expire


async def _proposal_views(
    ctx: Context, job: str, rows: list[asyncpg.Record], failed: list[ItemFailure]
) -> list[decide.ProposalView]:
    """getMarket (eth_call, batched) of each candidate row (market_id, in_ledger): the chain confirms what
    the index found (decision 7). An unreadable answer fails that item only."""
    checks: list[tuple[asyncpg.Record, bytes]] = []
    for r in rows:
        try:
            checks.append((r, encode_call("OpinionMarket", "getMarket", r["market_id"])))
        except Exception as exc:
            failed.append(ItemFailure("encode", f"{job}:{r['market_id']}", None, _describe(exc)))
    results = await _eth_calls(ctx.rpc, [(ctx.deployment.opinion_market, data) for _, data in checks])
    views = []
    for (r, _), res in zip(checks, results, strict=True):
        if isinstance(res, RpcError) and res.node_trouble:
            failed.append(_unanswered("check", f"{job}:{r['market_id']}", None, res))
            continue
        if isinstance(res, RpcError):
            log.warning("market_unreadable", job=job, market_id=r["market_id"], reason=error_name(res.revert_data))
            continue
        try:
            _c, end, _y, _n, status, _o, _lw, proposed, ends = decode_result("OpinionMarket", "getMarket", res)
        except Exception as exc:
            failed.append(ItemFailure("check", f"{job}:{r['market_id']}", None, _describe(exc)))
            continue
        views.append(
            decide.ProposalView(r["market_id"], int(end), int(status), int(proposed), int(ends), bool(r["in_ledger"]))
        )
    return views


async def _send_steps(
    ctx: Context,
    job: str,
    steps: list[tuple[int, str, tuple[Any, ...], dict[str, Any]]],
    counts: dict[str, int],
    decisions: list[tuple[str, str, str, str, dict[str, Any]]],
    failed: list[ItemFailure],
) -> None:
    """(market_id, OpinionMarket function, args, plan fields) each: encode, simulate, then record → send
    through the ledger (job key `{job}:{market_id}`: one live transaction per key, exactly once)."""
    om = bytes.fromhex(ctx.deployment.opinion_market[2:])
    encoded: list[tuple[int, bytes, dict[str, Any]]] = []
    for market_id, fn, args, plan in steps:
        try:
            encoded.append((market_id, encode_call("OpinionMarket", fn, *args), plan))
        except Exception as exc:
            failed.append(ItemFailure("encode", f"{job}:{market_id}", None, _describe(exc)))
    sims = await ctx.tx.simulate_many([(om, data, 0) for _, data, _ in encoded]) if encoded else []
    reqs: list[TxRequest] = []
    for (market_id, data, plan), sim in zip(encoded, sims, strict=True):
        key = f"{job}:{market_id}"
        if sim.node_trouble:
            failed.append(_unanswered("simulate", key, None, sim.reason))
            continue
        if not sim.ok:
            counts["skipped"] += 1
            ctx.metrics.skipped_total.labels(job=job, reason="simulation_reverted").inc()
            decisions.append((job, key, "skipped", f"simulation: {sim.reason}", {}))
            log.warning(f"{job}_simulation_failed", market_id=market_id, reason=sim.reason)
            continue
        reqs.append(TxRequest(job=job, job_key=key, to=om, data=data, gas_limit=sim.gas_limit, market_id=market_id))
        if ctx.dry_run:
            row = {"job": job, "job_key": key, "market_id": market_id, "gas_limit": sim.gas_limit, **plan}
            ctx.plan(row)
            log.info("tx_planned", **row)
    counts["failed"] = len(failed)
    await _record_failures(ctx, job, failed)
    if ctx.dry_run:
        for d in decisions:
            ctx.plan({"job": d[0], "job_key": d[1], "action": d[2], "reason": d[3]})
        return
    await store.insert_decisions(ctx.pool, ctx.chain_id, ctx.epoch(), decisions)
    counts["sent"] = len(await ctx.tx.submit(reqs))


FINALIZE_CANDIDATES_SQL = """
WITH c AS (
    SELECT market_id FROM idx.markets
     WHERE chain_id = $1 AND status IN ('proposed', 'disputed') AND NOT resolved
    UNION
    SELECT market_id FROM keeper.disputed_markets WHERE chain_id = $1
)
SELECT c.market_id,
       (EXISTS (SELECT 1 FROM keeper.txs t WHERE t.chain_id = $1 AND t.job_key = 'finalize:' || c.market_id
                 AND t.status NOT IN ('dropped', 'reverted'))
        OR (SELECT count(*) FROM keeper.txs t WHERE t.chain_id = $1 AND t.job_key = 'finalize:' || c.market_id
             AND t.status = 'reverted') >= $2) AS in_ledger
  FROM c ORDER BY c.market_id
"""
# finalizeOutcome and resolveExpired are anyone's to call and are simulated right before each send: a
# revert means the market changed between the simulation and the block (a race), so the step is sent
# again while the simulation passes, at most this many reverts a market (then it is left to an operator).
STEP_REVERTS_MAX = 3


async def finalize(ctx: Context, now: int | None = None) -> dict[str, int]:
    """finalizeOutcome for every proposal whose challenge window has ended (anyone may call it; the keeper
    does so the market resolves without waiting for a trader). A disputed proposal is never finalized:
    it is alerted (structlog error, keeper_disputes_total, keeper.disputed_markets) until the arbiter
    settles it."""
    now = await chain_time(ctx.rpc) if now is None else now
    async with store.connection(ctx.pool) as conn:
        rows = list(await conn.fetch(FINALIZE_CANDIDATES_SQL, ctx.chain_id, STEP_REVERTS_MAX))
    counts = {"candidates": len(rows), "sent": 0, "skipped": 0, "failed": 0, "waiting": 0, "disputed": 0}
    failed: list[ItemFailure] = []
    views = await _proposal_views(ctx, "finalize", rows, failed) if rows else []
    steps: list[tuple[int, str, tuple[Any, ...], dict[str, Any]]] = []
    disputed: list[decide.Disputed] = []
    decisions: list[tuple[str, str, str, str, dict[str, Any]]] = []
    for v in views:
        action = decide.decide_finalize(v, now)
        if isinstance(action, decide.Finalize):
            steps.append(
                (action.market_id, "finalizeOutcome", (action.market_id,), {"outcome": OUTCOME_NAMES[action.outcome]})
            )
        elif isinstance(action, decide.Disputed):
            disputed.append(action)
        elif isinstance(action, decide.Skip):
            counts["skipped"] += 1
            ctx.metrics.skipped_total.labels(job="finalize", reason=action.reason).inc()
        else:
            counts["waiting"] += 1
    counts["disputed"] = len(disputed)
    await _refresh_disputed(ctx, disputed)
    await _send_steps(ctx, "finalize", steps, counts, decisions, failed)
    log.info("finalize_finished", **counts)
    return counts


async def _refresh_disputed(ctx: Context, disputed: list[decide.Disputed]) -> None:
    """keeper.disputed_markets = the markets disputed now; each newly seen one is alerted once (an error log
    and keeper_disputes_total); keeper_disputed_markets is the current count (KeeperMarketDisputed)."""
    ctx.metrics.disputed.set(len(disputed))
    if ctx.dry_run:
        for d in disputed:
            ctx.plan({"job": "finalize", "job_key": f"finalize:{d.market_id}", "action": "alert", "reason": "disputed"})
        return
    async with store.connection(ctx.pool) as conn, conn.transaction():
        ids = [d.market_id for d in disputed]
        await conn.execute(
            "DELETE FROM keeper.disputed_markets WHERE chain_id = $1 AND NOT (market_id = ANY($2::bigint[]))",
            ctx.chain_id,
            ids,
        )
        new: set[int] = set()
        for d in disputed:
            fresh = await conn.fetchval(
                """
                INSERT INTO keeper.disputed_markets (chain_id, market_id, proposed_outcome) VALUES ($1, $2, $3)
                ON CONFLICT (chain_id, market_id) DO UPDATE SET last_seen_at = now()
                RETURNING (xmax = 0)
                """,
                ctx.chain_id,
                d.market_id,
                d.proposed_outcome,
            )
            if fresh:
                new.add(d.market_id)
        if new:
            await conn.executemany(
                "INSERT INTO keeper.decisions (chain_id, job, job_key, action, reason, epoch)"
                " VALUES ($1, 'finalize', $2, 'alerted', 'disputed', $3)",
                [(ctx.chain_id, f"finalize:{m}", ctx.epoch()) for m in sorted(new)],
            )
    for d in disputed:
        if d.market_id in new:
            ctx.metrics.disputes.inc()
            log.error(
                "market_disputed",
                market_id=d.market_id,
                proposed_outcome=OUTCOME_NAMES.get(d.proposed_outcome, str(d.proposed_outcome)),
                action="the arbiter settles it (arbitrate); the keeper never finalizes a disputed market",
            )


async def expire(ctx: Context, now: int | None = None) -> dict[str, int]:
    """resolveExpired (INVALID) for open or disputed markets past end + the contract's resolution window (a
    disputed one also past its arbitration deadline, read from the chain: decide.expires_at): no market stays
    locked forever, whatever the operator does, and a late dispute is never voided before the arbiter's time."""
    now = await chain_time(ctx.rpc) if now is None else now
    raw = await ctx.rpc.call(
        "eth_call",
        {"to": ctx.deployment.opinion_market, "data": hx(encode_call("OpinionMarket", "resolutionWindow"))},
        "latest",
    )
    (window,) = decode_result("OpinionMarket", "resolutionWindow", to_bytes(raw))
    async with store.connection(ctx.pool) as conn:
        rows = list(
            await conn.fetch(
                """
                SELECT m.market_id,
                       (EXISTS (SELECT 1 FROM keeper.txs t
                                 WHERE t.chain_id = $1 AND t.status NOT IN ('dropped', 'reverted')
                                   AND (t.job_key = 'expire:' || m.market_id
                                        OR t.job_key = 'resolve:' || m.market_id AND t.status = 'pending'))
                        OR (SELECT count(*) FROM keeper.txs t
                             WHERE t.chain_id = $1 AND t.job_key = 'expire:' || m.market_id
                               AND t.status = 'reverted') >= $4) AS in_ledger
                  FROM idx.markets m
                 WHERE m.chain_id = $1 AND NOT m.resolved AND m.status IN ('open', 'disputed')
                   AND m.end_time <= to_timestamp($2::bigint - $3::bigint)
                 ORDER BY m.market_id
                """,
                ctx.chain_id,
                now,
                int(window),
                STEP_REVERTS_MAX,
            )
        )
    counts = {"candidates": len(rows), "sent": 0, "skipped": 0, "failed": 0, "waiting": 0}
    failed: list[ItemFailure] = []
    views = await _proposal_views(ctx, "expire", rows, failed) if rows else []
    steps: list[tuple[int, str, tuple[Any, ...], dict[str, Any]]] = []
    for v in views:
        action = decide.decide_expiry(v, now, int(window))
        if isinstance(action, decide.Expire):
            steps.append((action.market_id, "resolveExpired", (action.market_id,), {"outcome": "invalid"}))
        elif isinstance(action, decide.Skip):
            counts["skipped"] += 1
            ctx.metrics.skipped_total.labels(job="expire", reason=action.reason).inc()
        else:
            counts["waiting"] += 1
    await _send_steps(ctx, "expire", steps, counts, [], failed)
    log.info("expire_finished", **counts)
    return counts


# ---------------------------------------------------------------------------- distribute


def period_of(now: dt.datetime) -> str:
    """The distribution period (a UTC day) a run at `now` belongs to."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%d")


CHAIN_WAIT_POLL_S = 2.0


async def _wait_for_chain_day(ctx: Context, period: str) -> None:
    """Until the chain's latest block is of the period's day (at or after its 00:00), for at most a quarter
    of the job's timeout (two minutes at most). The run fires at 00:00, when the latest block is still the
    day before's: read there, a quiet creator's lots maturing at that 00:00 showed nothing to do, the
    creator was skipped for the whole day, and its holders lost that day's market fees (review r5)."""
    start = int(dt.datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(ctx.settings.keeper.job_timeout_s / 4, 120.0)
    while (head := await chain_time(ctx.rpc)) < start:
        if loop.time() >= deadline:
            log.warning("chain_behind_period", period=period, head_time=head, behind_s=start - head)
            return
        await asyncio.sleep(CHAIN_WAIT_POLL_S)


CREATOR_READS = ("pendingPool", "supplyOf", "dividendStream")  # per creator, in this order


async def distribute(ctx: Context, period: str | None = None) -> dict[str, int]:
    """distributeDividends(creator) once per period for every creator with holders and a non-empty pool or pending
    shares (a run after 00:00 starts the lots whose 00:00 passed earning). Each creator is its own item: one that
    cannot be encoded, read or simulated is failed and the others go on. `deferred` counts the due creators not
    sent because the node did not answer (a rate limit, a timeout): the daemon fails such a run, so the period is
    retried (Daemon.catch_up) instead of being done for the day."""
    period = period or period_of(dt.datetime.now(dt.UTC))
    await _wait_for_chain_day(ctx, period)
    cs = ctx.deployment.creator_shares
    async with store.connection(ctx.pool) as conn:
        rows = await conn.fetch(
            "SELECT creator FROM idx.creators WHERE chain_id = $1 AND supply > 0"
            " AND (pool + market_fees_accrued > 0 OR pending_supply > 0) ORDER BY creator",
            ctx.chain_id,
        )
        creators = [bytes(r["creator"]) for r in rows]
        live = await store.live_job_keys(conn, ctx.chain_id, [decide.distribution_key(c, period) for c in creators])
    creators = [c for c in creators if decide.distribution_key(c, period) not in live]
    counts = {"candidates": len(creators), "sent": 0, "skipped": 0, "failed": 0, "deferred": 0}
    if not creators:
        return counts
    failed: list[ItemFailure] = []
    readable: list[tuple[bytes, list[tuple[str, bytes]]]] = []
    for c in creators:  # one malformed row (not a 20-byte address) fails alone (review h6: it stopped them all)
        try:
            addr = "0x" + c.hex()
            reads = [(cs, encode_call("CreatorShares", fn, addr)) for fn in CREATOR_READS]
        except Exception as exc:
            failed.append(ItemFailure("encode", decide.distribution_key(c, period), None, _describe(exc)))
            continue
        readable.append((c, reads))
    results = await _eth_calls(ctx.rpc, [call for _, reads in readable for call in reads])
    actions: list[decide.Distribute] = []
    decisions: list[tuple[str, str, str, str, dict[str, Any]]] = []
    for i, (c, _) in enumerate(readable):
        key = decide.distribution_key(c, period)
        answers = results[3 * i : 3 * i + 3]
        errors = [r for r in answers if isinstance(r, RpcError)]
        if any(e.node_trouble for e in errors):
            failed.append(_unanswered("check", key, None, next(e for e in errors if e.node_trouble)))
            continue
        try:
            if errors:  # the contract refused a read: nothing to decide from
                raise errors[0]
            pool_res, supply_res, stream_res = (r for r in answers if isinstance(r, bytes))
            pool, fees = decode_result("CreatorShares", "pendingPool", pool_res)
            (supply,) = decode_result("CreatorShares", "supplyOf", supply_res)
            _, _, _, vested, earning, maturing = decode_result("CreatorShares", "dividendStream", stream_res)
        except Exception as exc:  # one unreadable creator is failed and skipped; the others go on
            failed.append(ItemFailure("check", key, None, _describe(exc)))
            continue
        view = decide.CreatorView(
            c, int(pool), int(fees), int(supply), int(vested), earning=int(earning), maturing=int(maturing)
        )
        action = decide.decide_distribution(view, period)
        if isinstance(action, decide.Distribute):
            actions.append(action)
        elif isinstance(action, decide.Skip):
            counts["skipped"] += 1
            ctx.metrics.skipped_total.labels(job="distribute", reason=action.reason).inc()
            decisions.append(("distribute", action.key, "skipped", action.reason, {}))
    to = bytes.fromhex(cs[2:])
    encoded: list[tuple[decide.Distribute, bytes]] = []
    for a in actions:
        try:
            encoded.append((a, encode_call("CreatorShares", "distributeDividends", "0x" + a.creator.hex())))
        except Exception as exc:
            failed.append(ItemFailure("encode", decide.distribution_key(a.creator, period), None, _describe(exc)))
    sims = await ctx.tx.simulate_many([(to, d, 0) for _, d in encoded]) if encoded else []
    reqs = []
    for (a, data), sim in zip(encoded, sims, strict=True):
        key = decide.distribution_key(a.creator, period)
        if sim.node_trouble:  # no answer is not a revert: the creator is still due
            failed.append(_unanswered("simulate", key, None, sim.reason))
            continue
        if not sim.ok:
            counts["skipped"] += 1
            ctx.metrics.skipped_total.labels(job="distribute", reason="simulation_reverted").inc()
            decisions.append(("distribute", key, "skipped", f"simulation: {sim.reason}", {}))
            continue
        reqs.append(
            TxRequest(job="distribute", job_key=key, to=to, data=data, gas_limit=sim.gas_limit, creator=a.creator)
        )
        if ctx.dry_run:
            plan = {
                "job": "distribute",
                "job_key": key,
                "creator": "0x" + a.creator.hex(),
                "pending_wei": a.amount,
                "gas_limit": sim.gas_limit,
            }
            ctx.plan(plan)
            log.info("tx_planned", **plan)
    counts["failed"] = len(failed)
    counts["deferred"] = sum(1 for f in failed if f.transient)
    await _record_failures(ctx, "distribute", failed)
    if ctx.dry_run:
        for d in decisions:
            ctx.plan({"job": d[0], "job_key": d[1], "action": d[2], "reason": d[3]})
    else:
        await store.insert_decisions(ctx.pool, ctx.chain_id, ctx.epoch(), decisions)
        counts["sent"] = len(await ctx.tx.submit(reqs))
    log.info("distribute_finished", period=period, **counts)
    return counts
