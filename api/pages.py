"""The reference web page (api/static/): `/` serves index.html, `/static/*` its script and style,
`/static/config.json` the feed's address. Static files only, no build step; the page itself uses
nothing but the public API and the feed (docs/web.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from api.encode import JSONBody

if TYPE_CHECKING:
    from api.app import Runtime

STATIC = Path(__file__).resolve().parent / "static"


def feed_url(rt: Runtime, request: Request) -> str:
    """api.public_feed_url, or the feed port on the host the browser used to reach the page."""
    a = rt.settings.api
    if a.public_feed_url:
        return a.public_feed_url
    scheme = "wss" if request.url.scheme == "https" else "ws"
    host = request.url.hostname or "127.0.0.1"
    port = rt.state.hub.port if rt.state is not None and rt.state.hub.port else a.feed_port
    return f"{scheme}://{host}:{port}"


def routes(rt: Runtime) -> list[Route | Mount]:
    async def index(request: Request) -> Response:
        request.scope["gl_route"] = "/"
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def config(request: Request) -> Response:
        request.scope["gl_route"] = "/static/config.json"
        return JSONBody(
            {"feedUrl": feed_url(rt, request), "chainId": rt.settings.chain_id, "chainIds": list(rt.settings.chains)},
            # built from the Host header unless api.public_feed_url is set: a cache on the way that does not
            # key on Host must not hand one client's answer to the others (review h3)
            headers={"cache-control": "no-store", "vary": "Host"},
        )

    return [
        Route("/", index, methods=["GET"]),
        Route("/static/config.json", config, methods=["GET"]),
        Mount("/static", app=Files(directory=STATIC), name="static"),
    ]


class Files(StaticFiles):
    """StaticFiles with two edges closed (review h3), on routes the rate limits exempt: a path with a NUL
    is a 404 (StaticFiles raised ValueError, a logged 500 with a traceback per request), and `Range` is
    ignored (2,000 one-byte ranges made the 12 KB script a 227 KB answer, merged in O(n²)): these files
    are small, and a whole 200 is the cheaper answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"range"]}
        await super().__call__(scope, receive, send)

    async def get_response(self, path: str, scope: Scope) -> Response:
        if "\x00" in path:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)
