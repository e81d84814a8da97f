"""Cache warming over HTTP, and where the API listens — shared by the API (which owns the cache) and
the keeper (which runs the warming job on its schedule).

Warming goes through the API's own endpoints: the API fills its Redis keys with its own response
shapes and invalidation, so there is one definition of what is cached. Both wings need the hot
paths, the client loop and the API's port; none of it belongs to either wing, so it lives here
(docs/decisions.md, "Shared by two wings").
"""

from __future__ import annotations

import asyncio
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


class WarmError(RuntimeError):
    """The API could not be asked (refused, unreachable, hung past the deadline): names the URL and what to check.
    Not an OSError, on purpose: the keeper reads an OSError from its own wings as a database fault (review h6)."""


async def warm(
    base_url: str,
    token: str | None = None,
    paths: Sequence[str] = HOT_PATHS,
    top_markets: int = 20,
    deadline_s: float = 120.0,
) -> dict[str, int]:
    """Fills the hot keys by requesting them from a running API (the keeper's cache-warming job
    calls this every 15 minutes; pass an admin token to bypass rate limits). Returns path → status.
    The whole pass takes at most `deadline_s` (a request at most 30 s); an API that refuses, cannot be
    reached or does not answer in time raises WarmError at the first such request (the others would
    only wait the same way)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out: dict[str, int] = {}
    timeout = aiohttp.ClientTimeout(total=min(30.0, deadline_s))
    current = paths[0] if paths else ""
    try:
        async with (
            asyncio.timeout(deadline_s),
            aiohttp.ClientSession(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout) as http,
        ):
            for path in paths:
                current = path
                async with http.get(path.lstrip("/")) as resp:
                    out[path] = resp.status
                    body = await resp.read()
                if path == "/v1/markets" and resp.status == 200:
                    for m in orjson.loads(body)["data"][:top_markets]:
                        current = p = f"/v1/markets/{m['id']}"
                        async with http.get(p.lstrip("/")) as r2:
                            out[p] = r2.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        what = "no answer in time" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        raise WarmError(
            f"cannot warm through the API at {base_url} ({current}: {what}); check that the API runs there"
            " (keeper.api_base_url, or [api].port of the same config file)"
        ) from None
    return out
