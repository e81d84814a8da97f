"""The Python client example in docs/feed.md runs against the real feed and prints the events it
receives (it read `id.block_number` while the feed sends camelCase `blockNumber`: a KeyError on the
first event, found by the s13 docs audit)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.api.conftest import make_settings
from tests.api.test_api_feed import running, trade_row

pytestmark = [pytest.mark.pg, pytest.mark.redis]
DOC = Path(__file__).resolve().parents[2] / "docs" / "feed.md"


def example() -> str:
    text = DOC.read_text()
    section = text[text.index("## Example (Python)") :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]  # type: ignore[index]


async def test_the_documented_python_client_prints_the_events_it_receives(db_dsn: str, redis_url: str) -> None:
    code = example()
    assert 'connect("ws://127.0.0.1:58081")' in code
    assert code.rstrip().endswith("asyncio.run(main())")
    conn = await asyncpg.connect(db_dsn)
    async with running(make_settings(db_dsn, redis_url)) as (_, rt, url):
        namespace: dict[str, Any] = {}
        exec(code.replace("ws://127.0.0.1:58081", url).replace("asyncio.run(main())", ""), namespace)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            client = asyncio.create_task(namespace["main"]())
            for _ in range(300):  # connected and subscribed (no fixed sleep: a loaded machine is slower)
                if rt.state is not None and rt.state.hub.rooms.get("market:1"):
                    break
                await asyncio.sleep(0.05)
            await trade_row(conn, 1, 321)
            for _ in range(200):
                if out.getvalue() or client.done():
                    break
                await asyncio.sleep(0.05)
            client.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client  # raises the example's own error, if it failed
        printed = [line.split() for line in out.getvalue().splitlines() if line.startswith("market:")]
        assert printed == [["market:trade", "321", "unsafe"]], out.getvalue()
    await conn.close()
