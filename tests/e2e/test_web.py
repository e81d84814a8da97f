"""The reference page (api/static) in a real browser — Debian's Chromium driven by Playwright —
against the whole system: a trade made on chain appears on the market list and the market page
through the feed, the wallet page shows the trader's position, the operator page the indexer's
state; no console or CSP errors. With GL_SCREENSHOT_DIR set (`make screenshots`), each page is
saved as a PNG there."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from web3.logs import DISCARD

from core.deploy import anvil_account
from tests.e2e.stack import running_stack, wait_until
from tests.e2e.test_stack import USDC, Wallet, deadline

pytestmark = [pytest.mark.pg, pytest.mark.redis, pytest.mark.anvil, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Records the frames the page's feed connection receives (window.feedFrames).
RECORD_FEED = """
window.feedFrames = [];
const PageSocket = window.WebSocket;
window.WebSocket = class extends PageSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (e) => window.feedFrames.push(JSON.parse(e.data)));
  }
};
"""


def shoot(page: Any, name: str) -> None:
    target = os.environ.get("GL_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/bootstrap.sh installs it)")
def test_reference_page_follows_the_chain_in_a_real_browser(tmp_path: Path, db_dsn: str, redis_url: str) -> None:
    """A trade sent by a wallet shows up on the list (price and count) and on the market page
    (a new trade row and chart point) without a reload; wallet and operator pages render."""
    from playwright.sync_api import sync_playwright

    with running_stack(tmp_path, db_dsn, redis_url) as s:
        creator, trader = Wallet(s, anvil_account(5)), Wallet(s, anvil_account(6))
        for w in (creator, trader):
            w.fund()
        end_time = int(s.w3.eth.get_block("latest")["timestamp"]) + 3600
        receipt = creator.send(creator.om.functions.createMarket("Will the page update?", "tech", end_time, 100 * USDC))
        market_id = creator.om.events.MarketCreated().process_receipt(receipt, errors=DISCARD)[0].args.marketId
        wait_until(lambda: s.get(f"/v1/markets/{market_id}")["data"], "the market indexed", 30, s)
        # creator shares: the trader's 2 are warming up (they earn from 00:00 UTC of the second day)
        soon = end_time  # a deadline in the future
        creator.send(creator.cs.functions.buyShares(creator.address, 1, 0, soon))
        trader.send(trader.cs.functions.buyShares(creator.address, 2, 10**12, soon))
        holdings = f"/v1/users/{trader.address.lower()}/holdings"
        wait_until(lambda: s.get(holdings)["data"], "the trader's holding indexed", 30, s)

        errors: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.add_init_script(RECORD_FEED)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(s.api + "/")
            page.wait_for_selector("body[data-ready=markets]", timeout=30_000)
            page.wait_for_selector("#feed.live", timeout=30_000)
            row = f'tr[data-market="{market_id}"]'
            before = page.inner_text(f'{row} [data-field="yesPrice"]')
            assert page.inner_text(f'{row} [data-field="trades"]') == "0"

            trader.send(trader.om.functions.buy(market_id, 1, 20 * USDC, 0, deadline(s.w3)))
            page.wait_for_function(
                "([row, before]) => document.querySelector(row + ' [data-field=\"trades\"]').textContent === '1'"
                " && document.querySelector(row + ' [data-field=\"yesPrice\"]').textContent !== before",
                arg=[row, before],
                timeout=30_000,
            )
            shoot(page, "markets")

            page.goto(f"{s.api}/#/market/{market_id}")
            page.wait_for_selector("body[data-ready=market]", timeout=30_000)
            assert page.locator("#trades tbody tr").count() == 1
            receipt = trader.send(trader.om.functions.buy(market_id, 0, 5 * USDC, 0, deadline(s.w3)))
            tx = "0x" + bytes(receipt["transactionHash"]).hex()
            page.wait_for_selector(f'#trades tr[data-tx="{tx}"]', timeout=30_000)
            assert page.locator("#trades tbody tr").count() == 2
            assert page.locator("svg.chart polyline").get_attribute("points").count(",") == 3  # created + 2 trades
            shoot(page, "market")

            page.goto(f"{s.api}/#/wallet/{trader.address.lower()}")
            page.wait_for_selector("body[data-ready=wallet] #positions", timeout=30_000)
            # the market's room was left with its page (a connection may hold 50 rooms)
            page.wait_for_function(
                "room => window.feedFrames.some(f => f.type === 'unsubscribed' && f.rooms.includes(room))",
                arg=f"market:{market_id}",
                timeout=30_000,
            )
            assert page.evaluate("[...rooms]") == ["global:all"]
            assert page.locator(f'#positions a[href="#/market/{market_id}"]').count() == 1
            warming = page.locator("#holdings tbody tr td").last.inner_text()
            assert warming.startswith("2 from "), warming  # the lot and the 00:00 it earns from
            shoot(page, "wallet")

            page.goto(f"{s.api}/#/operator")
            page.wait_for_selector("body[data-ready=operator] #indexer .card", timeout=30_000)
            assert "indexed block" in page.inner_text("#indexer")
            shoot(page, "operator")
            browser.close()
        assert not errors, errors
