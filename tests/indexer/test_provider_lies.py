"""Providers that lie in ways tests/indexer/test_faults.py does not cover (review h2, an independent
fault injector): a log repeated with other data or at another index, a head no node has, logs of another
block hash, upper-case hex and `removed` logs, answers cut mid-JSON or padded past max_response_mb, every
provider down for a while, a slow provider through a long job, a provider answering from another chain.

Each test indexes a simulated chain through a proxy (FaultProxy with more faults) and compares the
result with a fresh index of the same chain (helpers.assert_same_index)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import threading
import time
import types
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from web3 import Web3

from core.deploy import DeployParams, anvil_account, deploy
from core.rpc_errors import TransientRpcError
from indexer.chain import ReorgTooDeep
from indexer.fetch import dedupe
from indexer.pipeline import Status
from indexer.service import run, watchdog
from indexer.tip import DEEP_REORG_CONFIRMATIONS, Tip
from tests.chain import Anvil
from tests.indexer.faultproxy import FaultProxy, Faults
from tests.indexer.helpers import (
    Node,
    assert_same_index,
    dump,
    fetch,
    index_to_head,
    make_settings,
    sim,
    start_indexer,
    wait_caught_up,
    write_toml,
)
from tests.indexer.test_faults import FUZZ, QUIET, raw, run_until_head

CLEAN = {**QUIET, "range_cap": 10**6}


class ForgingProxy(FaultProxy):
    """FaultProxy plus: `forge` (an eth_getLogs answer holding one of its logs twice, the copy with
    other data; `forged_first`: the copy before the real one), `phantom` (a copy of one of its logs at
    another log index), `ahead` (the first `ahead` reads of `latest` answered with a block 1000 above
    the head), `wrong_hash` (a log of the answer carrying another block hash)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.forge = 0.0
        self.forged_first = True
        self.phantom = 0.0
        self.ahead: dict[str, int] = {}
        self.wrong_hash = 0.0
        self.shout = 0.0  # a log's hex (address, topics, hashes, data) in upper case
        self.removed = 0.0  # a log of the answer marked removed: true
        self.delay = 0.0  # seconds before each answer (a slow provider that does answer)
        super().__init__(*args, **kw)

    truncate = 0.0  # an answer cut mid-JSON
    pad_mb = 0.0  # probability of an answer padded with 3 MB of whitespace (over max_response_mb = 2)

    async def _handle(self, request: Any, session: aiohttp.ClientSession) -> Any:
        if self.delay:
            await asyncio.sleep(self.delay)
        resp = await super()._handle(request, session)
        body = getattr(resp, "body", None)
        if isinstance(body, bytes) and len(body) > 10 and resp.status == 200:
            if self.rng.random() < self.truncate:
                self._count("truncate")
                resp.body = body[: self.rng.randrange(1, len(body) - 1)]
            elif self.rng.random() < self.pad_mb:
                self._count("pad")
                resp.body = body[:-1] + b" " * (3 << 20) + body[-1:]
        return resp

    async def _after(
        self, c: dict[str, Any], a: dict[str, Any], head: int | None, session: aiohttp.ClientSession
    ) -> dict[str, Any]:
        a = await super()._after(c, a, head, session)
        m, p, result = c.get("method"), c.get("params") or [], a.get("result")
        rng = self.rng
        tag = p[0] if m == "eth_getBlockByNumber" and p else None
        if tag in self.ahead and self.ahead[tag] > 0 and isinstance(result, dict):
            self.ahead[tag] -= 1
            self._count(f"ahead_{tag}")
            return {**a, "result": {**result, "number": hex(int(result["number"], 16) + 1000)}}
        if m != "eth_getLogs" or not isinstance(result, list) or not result:
            return a
        result = list(result)
        if rng.random() < self.forge:
            i = rng.randrange(len(result))
            real = result[i]
            d = real["data"]
            if len(d) > 2:
                self._count("forge")
                fake = {**real, "data": d[:-1] + ("1" if d[-1] == "0" else "0")}
                result.insert(i if self.forged_first else i + 1, fake)
        if rng.random() < self.phantom:
            self._count("phantom")
            real = result[rng.randrange(len(result))]
            result.append({**real, "logIndex": hex(int(real["logIndex"], 16) + 1000)})
        if rng.random() < self.shout:
            self._count("shout")

            def up(x: str) -> str:
                return x[:2] + x[2:].upper()

            result = [
                {
                    **r,
                    "address": up(r["address"]),
                    "topics": [up(t) for t in r["topics"]],
                    "data": up(r["data"]),
                    "blockHash": up(r["blockHash"]),
                    "transactionHash": up(r["transactionHash"]),
                }
                for r in result
            ]
        if rng.random() < self.removed:
            self._count("removed")
            i = rng.randrange(len(result))
            result[i] = {**result[i], "removed": True}
        if rng.random() < self.wrong_hash:
            self._count("wrong_hash")
            i = rng.randrange(len(result))
            result[i] = {**result[i], "blockHash": "0x" + "ee" * 32}
        return {**a, "result": result}


def fresh_index(node: Node, fresh_db: Any, tmp_path: Path) -> dict[str, Any]:
    want_dsn = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, want_dsn, tmp_path)) == 0
    return dump(want_dsn)


# ---------------------------------------------------------------- pure


def test_a_log_repeated_with_other_data_is_not_silently_resolved() -> None:
    """Two logs with one identity (block, index, block hash) but different data: one answer contradicts
    itself. dedupe kept whichever came first, silently; now the answer is asked again."""
    real = msgspec.structs.replace(raw(5, 0), data="0x" + "00" * 31 + "01")
    forged = msgspec.structs.replace(raw(5, 0), data="0x" + "00" * 31 + "02")
    with pytest.raises(TransientRpcError, match="two different logs"):
        dedupe([forged, real])


# ---------------------------------------------------------------- against anvil


@pytest.mark.anvil
@pytest.mark.pg
@pytest.mark.parametrize(
    ("tip", "first"),
    [(0, True), pytest.param(10**6, False, marks=pytest.mark.skipif(not FUZZ, reason="about 200 s: make fuzz"))],
)
def test_a_repeated_log_with_other_data_never_reaches_the_index(
    tip: int, first: bool, node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """30 % of eth_getLogs answers hold one log twice, the copy with its last data digit changed
    (before the real log for the backfill, which keeps the first; after it on the tip path, which
    keeps the last). A self-contradicting answer should be refused and asked again; the index must
    equal a fresh one, also after the re-scan of finalized blocks."""
    sim(node.url, node.deployment, seed=61, max_events=25)
    want = fresh_index(node, fresh_db, tmp_path)
    proxy = ForgingProxy(node.url, 61, Faults(**CLEAN))
    proxy.forge, proxy.forged_first = 0.3, first
    try:
        s = make_settings(proxy.url, node.deployment, db_dsn, tmp_path, tip_blocks=tip, initial_span=4, max_span=4)
        assert index_to_head(s) == 0
        proxy.forge = 0.0
        node.anvil.mine(70)
        s = make_settings(proxy.url, node.deployment, db_dsn, tmp_path, rescan_interval=1e-6)
        assert run_until_head(s) == 0
    finally:
        proxy.stop()
    assert proxy.counts.get("forge", 0) > 0
    assert_same_index(dump(db_dsn), want)


@pytest.mark.anvil
@pytest.mark.pg
@pytest.mark.parametrize("second_provider", [False, True])
def test_a_log_repeated_at_another_index_is_removed_by_the_rescan(
    second_provider: bool, node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """A provider repeats a log at another log index (30 % of answers): a phantom trade is committed.
    The lying stops; once final, the re-scan finds the phantom. With a second provider in rpc_urls that
    confirms it is not on the chain, it is repaired (re-index from the deploy block): the index equals a
    fresh one. With one provider it is reported (rescan_extra_unconfirmed), not repaired: a node that
    drops logs would otherwise make the indexer wipe true events."""
    sim(node.url, node.deployment, seed=62, max_events=25)
    want = fresh_index(node, fresh_db, tmp_path)
    proxy = ForgingProxy(node.url, 62, Faults(**CLEAN))
    proxy.phantom = 0.3
    try:
        s = make_settings(proxy.url, node.deployment, db_dsn, tmp_path, rescan_interval=0, initial_span=4, max_span=4)
        assert index_to_head(s) == 0
        assert proxy.counts.get("phantom", 0) > 0
        proxy.phantom = 0.0
        node.anvil.mine(70)
        urls = [proxy.url, node.url] if second_provider else proxy.url
        s = make_settings(urls, node.deployment, db_dsn, tmp_path, rescan_interval=1e-6)
        assert run_until_head(s) == 0
    finally:
        proxy.stop()
    if second_provider:
        assert_same_index(dump(db_dsn), want)
    else:
        got = dump(db_dsn)
        assert any(got[t] != want[t] for t in want)  # the phantom stays, reported


@pytest.mark.anvil
@pytest.mark.pg
@pytest.mark.parametrize("finality", ["depth", "tag"])
def test_a_head_far_ahead_read_twice_does_not_finalize_blocks_no_node_has(
    finality: str, node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """The first three `latest` reads (the start-up check and start's two head reads) come from a
    backend answering 1000 blocks above the real head. Afterwards every answer is honest. A 3-block
    reorg of the real chain, well inside finality_depth (64), must then be rolled back, not exit 3."""
    sim(node.url, node.deployment, seed=63, max_events=15)
    node.anvil.mine(5)
    proxy = ForgingProxy(node.url, 63, Faults(**CLEAN))
    proxy.ahead = {"latest": 3, "safe": 2, "finalized": 2}
    try:
        s = make_settings(proxy.url, node.deployment, db_dsn, tmp_path, tip_blocks=10**6, finality=finality)
        for _ in range(5):
            assert index_to_head(s) == 0
        assert proxy.counts.get("ahead_latest", 0) == 3
        real_head = node.anvil.head()
        fin = fetch(db_dsn, "SELECT * FROM idx.checkpoints")[0]
        print("checkpoint row after the run:", dict(fin), "real head:", real_head)
        node.anvil.call("anvil_reorg", 3, [])
        node.anvil.mine(1)
        code = index_to_head(s)
    finally:
        proxy.stop()
    assert code == 0, f"exit {code} on a 3-block reorg (finality was taken from a head no node had)"
    assert_same_index(dump(db_dsn), fresh_index(node, fresh_db, tmp_path))


@pytest.mark.anvil
@pytest.mark.pg
def test_logs_with_another_block_hash_are_refused_and_the_index_ends_equal(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """A node mid-reorg: 30 % of eth_getLogs answers hold a log whose blockHash is not its block's
    (by ranges and block by block). Never committed; the indexer keeps progressing to the head."""
    sim(node.url, node.deployment, seed=64, max_events=20)
    want = fresh_index(node, fresh_db, tmp_path)
    dsns = [db_dsn, fresh_db()]
    proxy = ForgingProxy(node.url, 64, Faults(**CLEAN))
    proxy.wrong_hash = 0.3
    try:
        for dsn, tip in zip(dsns, (0, 10**6), strict=True):
            s = make_settings(proxy.url, node.deployment, dsn, tmp_path, tip_blocks=tip, initial_span=5)
            assert asyncio.run(asyncio.wait_for(run(s, asyncio.Event(), until_head=True), 240)) == 0
    finally:
        proxy.stop()
    assert proxy.counts.get("wrong_hash", 0) > 0
    for dsn in dsns:
        assert_same_index(dump(dsn), want)


@pytest.mark.anvil
@pytest.mark.pg
def test_upper_case_hex_and_removed_logs_end_equal(node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path) -> None:
    """Half of the eth_getLogs answers in upper-case hex (addresses, topics, hashes, data), 20 % with
    a log marked removed: by ranges and block by block the index equals a fresh one."""
    sim(node.url, node.deployment, seed=65, max_events=25)
    want = fresh_index(node, fresh_db, tmp_path)
    dsns = [db_dsn, fresh_db()]
    proxy = ForgingProxy(node.url, 65, Faults(**CLEAN))
    proxy.shout, proxy.removed = 0.5, 0.2
    try:
        for dsn, tip in zip(dsns, (0, 10**6), strict=True):
            s = make_settings(proxy.url, node.deployment, dsn, tmp_path, tip_blocks=tip, initial_span=4, max_span=4)
            assert asyncio.run(asyncio.wait_for(run(s, asyncio.Event(), until_head=True), 240)) == 0
    finally:
        proxy.stop()
    assert proxy.counts.get("shout", 0) > 0
    assert proxy.counts.get("removed", 0) > 0
    for dsn in dsns:
        assert_same_index(dump(dsn), want)


# ---------------------------------------------------------------- outages, against the real process


def _stop(proc: subprocess.Popen[bytes], proxy: FaultProxy) -> None:
    """Ends a test's indexer process (killed if it still runs) and its proxy."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    proxy.stop()


def _outage_run(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path, faults: Faults, seconds: float, stall: float, kill: bool
) -> tuple[int | None, float, str]:
    """The indexer process through a proxy that turns `faults` on for `seconds` while blocks and events
    keep coming; returns (exit code if it exited during or after the outage, seconds to catch up once
    the faults stop, log tail)."""
    sim(node.url, node.deployment, seed=66, max_events=15)
    proxy = ForgingProxy(node.url, 66, Faults(**CLEAN))
    cfg = write_toml(
        tmp_path,
        [proxy.url],
        node.deployment,
        db_dsn,
        request_timeout=0.7,
        poll_interval=0.1,
        stall_seconds=stall,
        log_level="info",
        tip_blocks=4,
    )
    log = tmp_path / "indexer.log"
    proc = start_indexer(cfg, log)
    try:
        wait_caught_up(db_dsn, node.url, timeout=60)
        proxy.faults = faults
        end = time.monotonic() + seconds
        step = 0
        while time.monotonic() < end:
            step += 1
            if step % 3 == 0:
                sim(node.url, node.deployment, seed=660 + step, max_events=2)
            node.anvil.mine(1)
            if kill and step == 4:
                proc.kill()
                proc.wait()
                proc = start_indexer(cfg, log)
            time.sleep(0.5)
        proxy.faults = Faults(**CLEAN)
        node.anvil.mine(2)
        started = time.monotonic()
        code = proc.poll()
        if code is None:
            wait_caught_up(db_dsn, node.url, timeout=90)
        caught = time.monotonic() - started
        code = proc.poll() if code is None else code
        if code is None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        else:  # a supervisor restarts it: the index must still end complete
            proc = start_indexer(cfg, log)
            wait_caught_up(db_dsn, node.url, timeout=90)
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    finally:
        _stop(proc, proxy)
    assert_same_index(dump(db_dsn), fresh_index(node, fresh_db, tmp_path))
    return code, caught, log.read_text()[-4000:]


@pytest.mark.anvil
@pytest.mark.pg
@pytest.mark.parametrize("kill", [False, True])
def test_every_provider_down_for_a_while_then_back(
    kill: bool, node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """Every request fails (HTTP 502) for 15 s, stall_seconds 60: the indexer resumes on its own once
    the provider is back (with a SIGKILL and restart in the outage when `kill`), loses nothing, and
    catches up promptly."""
    faults = Faults(**{**CLEAN, "http_502": 1.0})
    code, caught, tail = _outage_run(node, db_dsn, fresh_db, tmp_path, faults, 15.0, 60.0, kill=kill)
    print(f"exit={code} caught_up_after={caught:.1f}s")
    assert code is None, tail
    assert caught < 15, f"caught up {caught:.1f}s after the provider came back"


@pytest.mark.anvil
@pytest.mark.pg
def test_a_slow_but_answering_provider_during_a_long_backfill_job_is_not_stuck(
    node: Node, db_dsn: str, tmp_path: Path
) -> None:
    """A provider that answers every request, each after 0.25 s, and caps eth_getLogs at 2 blocks:
    one backfill job of ~150 blocks takes ~75 answered requests (~19 s) in the fetch process. The
    child reported its answers only with the job's reply, so the watchdog saw none and called it stuck
    after stall_seconds (exit 4). Now it reports every second, and each range answered beyond the
    highest before is progress: the job is moving, and the indexer catches up (within the hard bound,
    four times stall_seconds without a commit)."""
    sim(node.url, node.deployment, seed=67, max_events=15)
    node.anvil.mine(80)
    proxy = ForgingProxy(node.url, 67, Faults(**{**QUIET, "range_cap": 2}))
    proxy.delay = 0.25
    cfg = write_toml(
        tmp_path,
        [proxy.url],
        node.deployment,
        db_dsn,
        request_timeout=5.0,
        poll_interval=0.1,
        stall_seconds=12.0,
        log_level="info",
        initial_span=1000,
        concurrency=1,
        tip_blocks=2,
    )
    log = tmp_path / "indexer.log"
    proc = start_indexer(cfg, log)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            rows = fetch(db_dsn, "SELECT block_number FROM idx.checkpoints")
            if rows and rows[0]["block_number"] >= node.anvil.head():
                break
            time.sleep(0.5)
        code = proc.poll()
        if code is None:
            wait_caught_up(db_dsn, node.url, timeout=30)
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    finally:
        _stop(proc, proxy)
    text = log.read_text()
    print([ln[:220] for ln in text.splitlines() if "stalled" in ln or "degraded" in ln])
    assert code is None, f"exit {code}: " + "\n".join(ln[:300] for ln in text.splitlines() if "stall" in ln)
    assert "indexer_stalled" not in text


@pytest.mark.anvil
@pytest.mark.pg
@pytest.mark.parametrize("pool", [False, True])
def test_a_provider_switched_to_another_chain_mid_run_is_not_a_deep_reorg(
    pool: bool, node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """The provider (a load balancer) starts answering from a node of another chain (eth_chainId
    1337, the same contracts deployed at the same addresses) for a while, then comes back. Expected:
    its answers are refused as another chain's (the chain id re-checked when hashes disagree), no
    exit 3 asking to wipe and re-index; the index ends equal to a fresh one."""
    sim(node.url, node.deployment, seed=68, max_events=15)
    other = Anvil(chain_id=1337)
    try:
        w3 = Web3(Web3.HTTPProvider(other.url, request_kwargs={"timeout": 30}))
        dep2 = deploy(w3, anvil_account(0), anvil_account(1).address, DeployParams())
        assert dep2["contracts"] == node.deployment["contracts"]
        sim(other.url, dep2, seed=69, max_events=30)
        other.mine(100)
        proxy = ForgingProxy(node.url, 68, Faults(**CLEAN))
        try:
            s = make_settings(
                [node.url, proxy.url] if pool else proxy.url,
                node.deployment,
                db_dsn,
                tmp_path,
                tip_blocks=8,
                finality="depth",
                poll_interval=0.1,
            )
            codes = [background_run(s, lambda: switch(proxy, other.url, node))]
            proxy.upstream = node.url
            codes.append(index_to_head(s))
        finally:
            proxy.stop()
        print("exit codes while switched, after:", codes)
    finally:
        other.stop()
    assert codes[0] != 3, f"exit codes {codes}: another chain's node read as a reorg too deep (exit 3: 'reset')"
    assert_same_index(dump(db_dsn), fresh_index(node, fresh_db, tmp_path))


def switch(proxy: FaultProxy, url: str, node: Node) -> None:
    """Once the indexer is at the head: the proxy's upstream becomes `url` for 10 s (node keeps mining)."""
    time.sleep(3)
    proxy.upstream = url
    for _ in range(20):
        node.anvil.mine(1)
        time.sleep(0.5)


def background_run(settings: Any, during: Any) -> int | None:
    """run() (not until_head) in a thread while `during()` runs here; then stopped. Its exit code if
    it ended by itself, else None."""
    box: dict[str, Any] = {}

    def main() -> None:
        async def go() -> int:
            box["loop"] = asyncio.get_running_loop()
            box["stop"] = stop = asyncio.Event()
            return await run(settings, stop)

        box["code"] = asyncio.run(go())

    t = threading.Thread(target=main, daemon=True)
    t.start()
    during()
    ended = not t.is_alive()
    if not ended:
        box["loop"].call_soon_threadsafe(box["stop"].set)
    t.join(60)
    return box.get("code") if ended else None


@pytest.mark.anvil
@pytest.mark.pg
@pytest.mark.parametrize(("truncate", "pad"), [(0.2, 0.0), (0.0, 0.1)])
def test_answers_cut_mid_json_or_oversized_are_asked_again(
    truncate: float, pad: float, node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """Answers cut mid-JSON (20 %), or padded past max_response_mb (10 %; an eth_getCode or a header
    is never legitimately that large): both paths reach the head (within 120 s) and the index equals
    a fresh one."""
    sim(node.url, node.deployment, seed=70, max_events=20)
    want = fresh_index(node, fresh_db, tmp_path)
    dsns = [db_dsn, fresh_db()]
    proxy = ForgingProxy(node.url, 70, Faults(**CLEAN))
    proxy.truncate, proxy.pad_mb = truncate, pad
    try:
        for dsn, tip in zip(dsns, (0, 10**6), strict=True):
            s = make_settings(
                proxy.url, node.deployment, dsn, tmp_path, tip_blocks=tip, initial_span=4, max_response_mb=2
            )
            assert asyncio.run(asyncio.wait_for(run(s, asyncio.Event(), until_head=True), 120)) == 0
    finally:
        proxy.stop()
    assert proxy.counts.get("truncate" if truncate else "pad", 0) > 0, proxy.counts
    for dsn in dsns:
        assert_same_index(dump(dsn), want)


# ---------------------------------------------------------------- the fixes' own limits (review h4)


async def _stuck_backfill(status: Status, stop: asyncio.Event, report_fetched: bool) -> None:
    """A backfill whose commit fails every iteration (the checkpoint never moves) while each retry fetches
    ranges up to the current target, which rises with the head."""
    status.role, status.indexed = "writer", 1000
    head = 1100
    while not stop.is_set():
        head += 1
        now = time.monotonic()
        status.head, status.head_moved, status.last_answer = head, now, now
        if report_fetched:
            status.fetched(head)
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("report_fetched", [False, True])
async def test_a_backfill_whose_commits_always_fail_still_exits_4(report_fetched: bool) -> None:
    """Ranges fetched up to a rising head are progress for 'degraded', never for the hard bound: a job
    failing at its end every time still stops after four times stall_seconds without a commit."""
    limit = 0.3
    settings = types.SimpleNamespace(options=types.SimpleNamespace(stall_seconds=limit))
    status, stop, stalled = Status(), asyncio.Event(), []
    loop = asyncio.create_task(_stuck_backfill(status, stop, report_fetched))
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watchdog(settings, status, stop, stalled), 4 * limit + 3.0)  # type: ignore[arg-type]
    finally:
        stop.set()
        await loop
    assert stalled == [True], f"checkpoint stuck at {status.indexed}, head {status.head}: the watchdog never fired"


class _Providers:
    """Providers on our chain: those in `moved` followed a reorg below finality (another hash for the block,
    head 700); the others stopped syncing before it (our hash, head `stale_head`)."""

    def __init__(self, ours: bytes, moved: set[int], n: int, stale_head: int) -> None:
        self.ours, self.moved, self.providers, self.stale_head = ours, moved, n, stale_head

    async def chain_id(self, provider: int, retry: object) -> int:
        return 8453

    async def header(self, n: int | str, provider: int, retry: object) -> object:
        moved = provider in self.moved
        if n == "latest":
            return types.SimpleNamespace(number=700 if moved else self.stale_head)
        return types.SimpleNamespace(number=n, hash=b"\x02" * 32 if moved else self.ours)


@pytest.mark.parametrize(("stale_head", "confirmed"), [(600, True), (699, False)])
async def test_a_stale_provider_does_not_veto_a_real_deep_reorg(stale_head: int, confirmed: bool) -> None:
    """A node that stopped syncing before a real reorg below finality agrees with our hash by definition:
    its agreement kept the indexer from ever exiting 3 (review h4). It counts only when it is current."""
    tip = object.__new__(Tip)
    tip.chain_id = 8453
    ours = b"\x01" * 32
    tip.rpc = _Providers(ours, {0}, 2, stale_head)  # type: ignore[assignment]
    exc = ReorgTooDeep("deep", 500)
    seen = 0
    for _ in range(DEEP_REORG_CONFIRMATIONS):
        try:
            await tip._confirm_deep_reorg(exc, ours)
            seen += 1
        except TransientRpcError:
            pass
    assert (seen > 0) is confirmed
