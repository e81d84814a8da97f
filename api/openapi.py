"""The OpenAPI 3.0 document, built from the same Endpoint/Param declarations the app validates
with, and a self-contained HTML docs page rendered from it (no scripts, no CDN)."""

from __future__ import annotations

import html
from typing import Any

from api.params import Param
from api.settings import Settings

AMOUNT = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{6}$", "description": "USDC, 6 decimals, as a string"}
ERROR = {
    "type": "object",
    "required": ["statusCode", "message", "errors", "timestamp", "path"],
    "properties": {
        "statusCode": {"type": "integer"},
        "message": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "timestamp": {"type": "string", "format": "date-time"},
        "path": {"type": "string"},
    },
}
AS_OF = {
    "type": "object",
    "required": ["chain_id", "block_number", "block_hash", "safe_block", "finalized_block"],
    "properties": {
        "chain_id": {"type": "integer"},
        "block_number": {"type": "integer", "nullable": True},
        "block_hash": {"type": "string", "nullable": True},
        "safe_block": {"type": "integer", "nullable": True},
        "finalized_block": {"type": "integer", "nullable": True},
    },
}
PAGE_META = {
    "type": "object",
    "required": ["page", "limit", "total", "totalPages", "hasNext", "hasPrevious"],
    "properties": {
        "page": {"type": "integer"},
        "limit": {"type": "integer"},
        "total": {"type": "integer"},
        "totalPages": {"type": "integer"},
        "hasNext": {"type": "boolean"},
        "hasPrevious": {"type": "boolean"},
    },
}
CURSOR_META = {
    "type": "object",
    "required": ["limit", "hasNext", "nextCursor"],
    "properties": {
        "limit": {"type": "integer"},
        "hasNext": {"type": "boolean"},
        "nextCursor": {"type": "string", "nullable": True},
    },
}
MARKET = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "question": {"type": "string"},
        "category": {"type": "string"},
        "creator": {"type": "string"},
        "status": {"type": "string", "enum": ["active", "closed", "resolved"]},
        "outcome": {"type": "string", "nullable": True, "enum": ["yes", "no", "invalid", None]},
        "endTime": {"type": "string", "format": "date-time"},
        "yesPrice": {"type": "string"},
        "noPrice": {"type": "string"},
        "yesReserve": AMOUNT,
        "noReserve": AMOUNT,
        "liquidity": AMOUNT,
        "volume": AMOUNT,
        "volume24h": AMOUNT,
        "trades24h": {"type": "integer"},
    },
}
ERROR_CODES = {
    "400": "Validation failed (errors name the field)",
    "401": "Authentication required or failed",
    "403": "Forbidden",
    "404": "Not found",
    "405": "Method not allowed",
    "413": "Body too large",
    "415": "Content-Type must be application/json",
    "429": "Rate limited (see RateLimit-* headers)",
    "500": "Internal error",
    "503": "Database unavailable or query timed out",
}


def param_schema(p: Param) -> dict[str, Any]:
    if p.kind == "int":
        s: dict[str, Any] = {"type": "integer"}
        if p.minimum is not None:
            s["minimum"] = p.minimum
        if p.maximum is not None:
            s["maximum"] = p.maximum
    elif p.kind == "bool":
        s = {"type": "boolean"}
    elif p.kind == "address":
        s = {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}
    elif p.kind == "enum":
        s = {"type": "string", "enum": list(p.choices)}
    elif p.kind == "time":
        s = {"type": "string", "format": "date-time", "description": "ISO 8601 or unix seconds"}
    elif p.kind == "ids":
        s = {"type": "string", "pattern": f"^[0-9]{{1,18}}(,[0-9]{{1,18}}){{0,{p.max_items - 1}}}$"}
    elif p.kind == "sort":
        s = {"type": "string", "pattern": f"^({'|'.join(p.choices)})(:(asc|desc))?$"}
    else:
        s = {"type": "string", "maxLength": p.max_length}
    if p.default is not None and p.kind in ("int", "enum", "bool"):
        s["default"] = p.default
    return s


def spec(settings: Settings) -> dict[str, Any]:
    from api.routes import ENDPOINTS

    paths: dict[str, Any] = {}
    for ep in ENDPOINTS:
        params = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.where == "path" or p.required,
                "description": p.description,
                "schema": param_schema(p),
            }
            for p in ep.params
        ]
        meta: dict[str, Any] = (
            {"$ref": "#/components/schemas/PageMeta"}
            if ep.paged == "page"
            else ({"$ref": "#/components/schemas/CursorMeta"} if ep.paged == "cursor" else {"type": "object"})
        )
        envelope = {
            "type": "object",
            "required": ["data", "as_of"],
            "properties": {"data": ep.response or {}, "meta": meta, "as_of": {"$ref": "#/components/schemas/AsOf"}},
        }
        ok = "201" if ep.path == "/v1/auth/nonce" else ("202" if ep.path == "/v1/admin/maintenance" else "200")
        responses: dict[str, Any] = {ok: {"description": "OK", "content": {"application/json": {"schema": envelope}}}}
        for code, text in ERROR_CODES.items():
            responses[code] = {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        op: dict[str, Any] = {
            "operationId": f"{ep.method.lower()}_{ep.path.strip('/').replace('/', '_')}".replace("{", "").replace(
                "}", ""
            ),
            "summary": ep.summary,
            "description": " ".join((ep.handler.__doc__ or "").split()),
            "tags": [ep.tag],
            "parameters": params,
            "responses": responses,
        }
        if ep.auth is not None:
            op["security"] = [{"bearer": []}]
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ep.body}}}
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    for path, summary in (("/health", "Liveness"), ("/ready", "Readiness (indexer lag, database, Redis)")):
        paths[path] = {
            "get": {
                "operationId": path.strip("/"),
                "summary": summary,
                "tags": ["system"],
                "responses": {
                    "200": {"description": "OK"},
                    "503": {
                        "description": "Not ready",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                },
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "GuessLyfe read API",
            "version": "1.0.0",
            "description": "Indexed on-chain state of GuessLyfe opinion markets and creator shares. Amounts are "
            "decimal strings (USDC has 6 decimals); every response carries `as_of`; errors use "
            "one body {statusCode, message, errors[{field, message}], timestamp, path}. "
            f"Chain id {settings.chain_id}. Live events: the websocket feed (docs/feed.md).",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": ERROR,
                "AsOf": AS_OF,
                "PageMeta": PAGE_META,
                "CursorMeta": CURSOR_META,
                "Market": MARKET,
                "Amount": AMOUNT,
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "from POST /v1/auth/verify (Sign-In with Ethereum)",
                }
            },
        },
    }


def render_docs(doc: dict[str, Any]) -> str:
    """A readable, static HTML page of the document (inline CSS only; CSP-friendly)."""
    e = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>GuessLyfe API</title><style>",
        "body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
        "code,td.m{font-family:ui-monospace,monospace}table{border-collapse:collapse;width:100%;margin:.4em 0 1.4em}",
        "td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}h3{margin-bottom:.2em}",
        ".get{color:#06c}.post{color:#090}.auth{color:#a50;font-size:.85em}</style></head><body>",
        f"<h1>{e(doc['info']['title'])} <small>{e(doc['info']['version'])}</small></h1>",
        f"<p>{e(doc['info']['description'])}</p><p>Machine-readable: <a href=/openapi.json>/openapi.json</a>. "
        "Pagination: <code>page</code>/<code>limit</code> with the <code>meta</code> block, or "
        "<code>cursor</code>/<code>limit</code> with <code>meta.nextCursor</code>.</p>",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            by_tag.setdefault(op["tags"][0], []).append((method, path, op))
    for tag, ops in by_tag.items():
        parts.append(f"<h2>{e(tag)}</h2>")
        for method, path, op in ops:
            auth = " <span class=auth>requires bearer token</span>" if op.get("security") else ""
            parts.append(
                f"<h3><span class={method}>{method.upper()}</span> <code>{e(path)}</code>{auth}</h3>"
                f"<p>{e(op['summary'])}. {e(op.get('description', ''))}</p>"
            )
            if op.get("parameters"):
                parts.append("<table><tr><th>parameter</th><th>in</th><th>schema</th><th>description</th></tr>")
                for p in op["parameters"]:
                    req = " (required)" if p["required"] else ""
                    parts.append(
                        f"<tr><td class=m>{e(p['name'])}{req}</td><td>{e(p['in'])}</td>"
                        f"<td class=m>{e(str(p['schema']))}</td><td>{e(p.get('description', ''))}</td></tr>"
                    )
                parts.append("</table>")
            if "requestBody" in op:
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                parts.append(f"<p>Body: <code>{e(str(schema))}</code></p>")
    parts.append("</body></html>")
    return "".join(parts)


def markdown(doc: dict[str, Any]) -> str:
    """The endpoint reference for docs/api.md, generated from the document."""
    out: list[str] = []
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            by_tag.setdefault(op["tags"][0], []).append((method, path, op))
    for tag, ops in by_tag.items():
        out.append(f"### {tag}\n")
        for method, path, op in ops:
            auth = " — bearer token" + (" (admin)" if "/admin/" in path else "") if op.get("security") else ""
            out.append(f"**`{method.upper()} {path}`**{auth} — {op['summary']}. {op.get('description', '')}".rstrip())
            params = [p for p in op.get("parameters", []) if p["in"] == "query"]
            if params:
                cells = []
                for p in params:
                    s = p["schema"]
                    kind = ", ".join(s["enum"]) if "enum" in s else s.get("pattern") or s.get("format") or s["type"]
                    if "minimum" in s or "maximum" in s:
                        kind += f" [{s.get('minimum', '')}..{s.get('maximum', '')}]"
                    default = f", default {s['default']}" if "default" in s else ""
                    req = " (required)" if p["required"] else ""
                    cells.append(f"`{p['name']}`{req}: {kind}{default}")
                out.append("\n  Query: " + "; ".join(cells))
            if "requestBody" in op:
                props = op["requestBody"]["content"]["application/json"]["schema"].get("properties", {})
                out.append("\n  Body (JSON): " + (", ".join(f"`{k}`" for k in props) or "`{}`"))
            out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    from api.settings import ApiSection

    _settings = Settings(
        chain_id=31337, dsn="", read_dsn="", redis_url="", api=ApiSection(), jwt_secret="x", cursor_secret=b"x"
    )
    if "--markdown" in sys.argv:
        sys.stdout.write(markdown(spec(_settings)))
    else:
        import json

        sys.stdout.write(json.dumps(spec(_settings), indent=1))
