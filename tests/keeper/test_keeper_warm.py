"""Cache warming goes through the API's own core.warm.warm (one definition of cached shapes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from keeper.daemon import Daemon
from tests.keeper.kit import make_settings
from tests.local_http import serving


async def test_warm_requests_the_apis_hot_paths(tmp_path: Path) -> None:
    """The warm job asks the API for its hot paths (and the top markets) and fails on server errors."""
    seen: list[str] = []
    status = {"code": 200}

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        if request.path == "/v1/markets":
            return web.json_response({"data": [{"id": 7}, {"id": 9}]}, status=status["code"])
        return web.json_response({"data": []}, status=status["code"])

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    async with serving(app) as url:
        daemon = Daemon(
            make_settings(
                "http://127.0.0.1:1",
                "postgresql://x@127.0.0.1:1/x",
                tmp_path / "d.json",
                api_base_url=url,
                warm_enabled=True,
            )
        )
        result = await daemon.warm()
        assert result["paths"] >= 7
        assert "/v1/markets/trending" in seen
        assert "/v1/leaderboards/traders" in seen
        assert "/v1/markets/7" in seen
        status["code"] = 503
        with pytest.raises(RuntimeError, match="server errors"):
            await daemon.warm()
