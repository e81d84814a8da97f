"""Review hi: [chain] and [indexer] input accepted at load that is wrong, or refused with a message that
leaks a secret or names the wrong key (docs/operations.md "One config file": "DSNs, RPC URLs, keys and
passwords never appear in logs or reprs"; errors name the key and what to do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ChainSettings, ConfigError
from indexer.metrics import Metrics
from indexer.pipeline import Status
from indexer.rpc import Rpc
from indexer.service import Indexer
from tests.chain import ROOT
from tests.indexer.helpers import make_settings
from tests.indexer.mocknode import DEPLOYMENT

SECRET = "SeCrEtApIkEy0123456789"


@pytest.mark.parametrize(
    "url",
    [
        f"base-mainnet.g.alchemy.com/v2/{SECRET}",  # the scheme forgotten
        f"https:/base-mainnet.g.alchemy.com/v2/{SECRET}",  # one slash short
    ],
)
def test_a_malformed_rpc_url_is_refused_without_echoing_it(url: str) -> None:
    """chain.rpc_urls errors name the index, never the URL ("a provider's key is often in its path or
    query", core/config.py); a URL without "://" was echoed whole by `url.split('://')[0]`."""
    with pytest.raises(ConfigError) as err:
        ChainSettings(chain_id=8453, rpc_urls=("https://mainnet.base.org", url))
    assert SECRET not in str(err.value), f"the API key is in the config_invalid line: {err.value}"
    assert "chain.rpc_urls[1]" in str(err.value), f"the message does not name the entry: {err.value}"


@pytest.mark.parametrize("url", ["http://", f"https:///v2/{SECRET}", "http://:8545"])
def test_an_rpc_url_without_a_host_is_refused_at_load(url: str) -> None:
    """Accepted, it is a provider that can never answer: skipped by the chain-id check
    (provider_not_checked) and, alone, max_failures iterations then exit 1 in a restart loop, instead of
    exit 2 naming chain.rpc_urls."""
    try:
        ChainSettings(chain_id=31337, rpc_urls=(url,))
    except ConfigError:
        return
    pytest.fail(f"chain.rpc_urls = [{url!r}] (no host) accepted at load")


@pytest.mark.parametrize("ws_url", ["http://127.0.0.1:8545", "127.0.0.1:8546", "wss:/node.example"])
def test_a_ws_url_that_is_not_a_websocket_url_is_refused_at_load(ws_url: str) -> None:
    """rpc_urls refuses ws:// ("websocket goes in chain.ws_url"), but ws_url takes anything. The head
    watcher (indexer/live.py run) then fails to connect for ever and logs nothing (newheads_disconnected
    only after a first success): the indexer silently polls instead of following newHeads."""
    with pytest.raises(ConfigError, match=r"chain\.ws_url"):
        ChainSettings(chain_id=31337, rpc_urls=("http://127.0.0.1:8545",), ws_url=ws_url)


def test_a_bad_metrics_host_names_metrics_host(tmp_path: Path) -> None:
    """indexer.metrics_host that cannot be bound (a typo, an address of another host): the one line blamed
    the port key and told the operator to pick another port."""
    dep = tmp_path / "deployment.json"
    dep.write_text(json.dumps(DEPLOYMENT))
    base = {k: v for k, v in os.environ.items() if not k.startswith("GL_")}
    env = {
        **base,
        "PYTHONPATH": str(ROOT),
        "GL_DATABASE__DSN": "postgresql://nobody@127.0.0.1:1/none",
        "GL_CHAIN__RPC_URLS": "http://127.0.0.1:1",
        "GL_CHAIN__DEPLOYMENT": str(dep),
        "GL_INDEXER__METRICS_HOST": "metrics.host.invalid",
    }
    out = subprocess.run(
        [sys.executable, "-m", "indexer"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    lines = [line for line in out.stderr.splitlines() if "config_invalid" in line]
    assert out.returncode == 2, out.stderr[-1500:]
    assert lines, out.stderr[-1500:]
    assert "indexer.metrics_host" in lines[0], f"the line does not name indexer.metrics_host: {lines[0]}"


async def test_the_first_range_is_within_max_span(tmp_path: Path) -> None:
    """max_span is the "operator maximum range" (docs/indexer.md); an operator on a provider capped at 10
    blocks sets max_span = 10, but initial_span (default 25) is neither checked against it at load nor
    capped by it: the first eth_getLogs range (plan_range(…, self.span)) is 25 blocks."""
    settings = make_settings(
        "http://127.0.0.1:1", DEPLOYMENT, "postgresql://unused/x", tmp_path, fetch_process=False, max_span=10
    )
    async with Rpc(["http://127.0.0.1:1"], 5.0) as rpc:
        ix = Indexer(settings, rpc, Metrics(31337), Status())
        assert ix.span <= settings.options.max_span, (
            f"first range {ix.span} blocks > indexer.max_span {settings.options.max_span}"
        )
