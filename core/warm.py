"""Cache warming over HTTP, and where the API listens — shared by the API (which owns the cache) and
the keeper (which runs the warming job on its schedule).

Warming goes through the API's own endpoints: the API fills its Redis keys with its own response
shapes and invalidation, so there is one definition of what is cached. Both wings need the hot
paths, the client loop and the API's port; none of it belongs to either wing, so it lives here
(docs/decisions.md, "Shared by two wings").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson

from core.config import section

DEFAULT_API_PORT = 58080  # [api].port when the file sets none

HOT_PATHS = (
    "/v1/markets",
    "/v1/markets?sort=volume24h:desc",
    "/v1/markets/trending",
    "/v1/creators",
    "/v1/leaderboards/traders",
    "/v1/leaderboards/creators",
    "/v1/stats",
)


@dataclasses.dataclass(frozen=True, slots=True)
class _ApiPort:
    port: int = DEFAULT_API_PORT


def api_base_url(config: Mapping[str, Any]) -> str:
    """http://127.0.0.1:{[api].port} of the config file (env override GL_API__PORT applies)."""
    raw = config.get("api", {})
    only_port = {"api": {"port": raw["port"]}} if isinstance(raw, dict) and "port" in raw else {}
    return f"http://127.0.0.1:{section(only_port, 'api', _ApiPort).port}"


async def warm(
    base_url: str, token: str | None = None, paths: Sequence[str] = HOT_PATHS, top_markets: int = 20
) -> dict[str, int]:
    """Fills the hot keys by requesting them from a running API (the keeper's cache-warming job
    calls this every 15 minutes; pass an admin token to bypass rate limits). Returns path → status."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out: dict[str, int] = {}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout) as http:
        for path in paths:
            async with http.get(path.lstrip("/")) as resp:
                out[path] = resp.status
                body = await resp.read()
            if path == "/v1/markets" and resp.status == 200:
                for m in orjson.loads(body)["data"][:top_markets]:
                    p = f"/v1/markets/{m['id']}"
                    async with http.get(p.lstrip("/")) as r2:
                        out[p] = r2.status
    return out
