"""The OpenAPI 3.0 document, built from the same Endpoint/Param declarations the app validates
with, and a self-contained HTML docs page rendered from it (no scripts, no CDN)."""

from __future__ import annotations

import html
from typing import Any

from api.context import Endpoint
from api.params import ADDRESS_TEXT, CURSOR_RE, MAX_INT, TEXT_PATTERN, TIME_RE, Param, filter_pattern
from api.schemas import AS_OF, COMPONENTS, CURSOR_META, ERROR, PAGE_META
from api.settings import Settings
from core.contracts import ADDRESS_RE

ERROR_TEXT = {
    400: "Validation failed (errors name the field)",
    401: "Authentication required or failed",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict with the current state (errors say which)",
    413: "Body too large",
    415: "Content-Type must be application/json",
    429: "Rate limited (see RateLimit-* and Retry-After)",
    500: "Internal error",
    503: "Database busy, unavailable or query timed out (Retry-After when worth retrying)",
}
# Every operation can answer these: validation (unknown parameters are errors), body size, rate
# limit, internal error, database unavailable.
COMMON_ERRORS = (400, 413, 429, 500, 503)
INT_HEADER = {"schema": {"type": "integer", "minimum": 0}}
RATE_HEADERS = {
    "RateLimit-Limit": {"description": "requests allowed per window", **INT_HEADER},
    "RateLimit-Remaining": {"description": "requests left in this window", **INT_HEADER},
    "RateLimit-Reset": {"description": "seconds until the window resets", **INT_HEADER},
    "RateLimit-Policy": {"description": "LIMIT;w=WINDOW_SECONDS", "schema": {"type": "string"}},
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", **INT_HEADER}}
X_CACHE = {
    "X-Cache": {
        "description": "hit, shared (a concurrent request's answer), miss or bypass",
        "schema": {"type": "string", "enum": ["hit", "shared", "miss", "bypass"]},
    }
}


def param_schema(p: Param) -> dict[str, Any]:
    """The schema of one parameter: exactly the syntax api/params.py accepts."""
    if p.kind == "int":
        s: dict[str, Any] = {"type": "integer", "format": "int64"}
        s["minimum"] = p.minimum if p.minimum is not None else -MAX_INT
        s["maximum"] = p.maximum if p.maximum is not None else MAX_INT
    elif p.kind == "bool":
        s = {"type": "boolean"}
    elif p.kind == "address":
        s = {"type": "string", "format": "eip55-address", "pattern": ADDRESS_RE.pattern, "description": ADDRESS_TEXT}
    elif p.kind == "enum":
        s = {"type": "string", "enum": list(p.choices)}
    elif p.kind == "time":
        s = {"type": "string", "pattern": TIME_RE.pattern, "description": "RFC 3339 date-time or unix seconds"}
    elif p.kind == "ids":
        s = {
            "type": "string",
            "pattern": f"^[0-9]{{1,18}}(,[0-9]{{1,18}}){{0,{p.max_items - 1}}}$",
            "maxLength": p.max_length,
        }
    elif p.kind == "sort":
        s = {"type": "string", "pattern": f"^({'|'.join(p.choices)})(:(asc|desc))?$"}
    elif p.kind == "filter":
        s = {"type": "string", "pattern": filter_pattern(p), "maxLength": p.max_length}
    elif p.kind == "cursor":
        s = {"type": "string", "pattern": CURSOR_RE.pattern, "maxLength": p.max_length}
    else:
        s = {"type": "string", "pattern": TEXT_PATTERN, "maxLength": p.max_length}
    if p.default is not None and p.kind in ("int", "enum", "bool"):
        s["default"] = p.default
    return s


def ok_headers(ep: Endpoint) -> dict[str, Any]:
    return {**RATE_HEADERS, **(X_CACHE if ep.cache is not None else {})}


def responses_for(ep: Endpoint) -> dict[str, Any]:
    """The success envelope {data, meta?, asOf} and every error status the endpoint can answer."""
    meta = ep.meta
    if meta is None and ep.paged is not None:
        meta = PAGE_META if ep.paged == "page" else CURSOR_META
    props: dict[str, Any] = {"data": ep.response or {}}
    required = ["data", "asOf"]
    if meta is not None:
        props["meta"] = meta
        required.insert(1, "meta")
    props["asOf"] = AS_OF
    envelope = {"type": "object", "additionalProperties": False, "required": required, "properties": props}
    out: dict[str, Any] = {
        str(ep.status): {
            "description": "OK" if ep.status == 200 else ("Created" if ep.status == 201 else "Accepted"),
            "headers": ok_headers(ep),
            "content": {"application/json": {"schema": envelope}},
        }
    }
    codes = set(COMMON_ERRORS) | set(ep.errors)
    if ep.auth is not None:
        codes.add(401)
    if ep.auth == "admin":
        codes.add(403)
    if ep.body is not None:
        codes.add(415)
    for code in sorted(codes):
        headers: dict[str, Any] = {}
        if code == 429:
            headers = {**RATE_HEADERS, **RETRY_AFTER}
        elif code == 503:
            headers = RETRY_AFTER
        out[str(code)] = {
            "description": ERROR_TEXT[code],
            "headers": headers,
            "content": {"application/json": {"schema": ERROR}},
        }
    return out


def operation_id(method: str, path: str) -> str:
    return f"{method.lower()}_{path.strip('/').replace('/', '_')}".replace("{", "").replace("}", "")


def _error_responses(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": ERROR_TEXT[c], "content": {"application/json": {"schema": ERROR}}} for c in codes}


def spec(settings: Settings) -> dict[str, Any]:
    from api.routes import ENDPOINTS
    from api.routes.system import HEALTH, READY

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
        params.append(
            {
                "name": "chainId",
                "in": "query",
                "required": False,
                "description": "the chain to answer for (api.chain_ids); default " + str(settings.chain_id),
                "schema": {"type": "integer", "enum": list(settings.chains)},
            }
        )
        if ep.response is None:
            raise ValueError(f"{ep.method} {ep.path} declares no response schema")
        op: dict[str, Any] = {
            "operationId": operation_id(ep.method, ep.path),
            "summary": ep.summary,
            "description": " ".join(((ep.handler.__doc__ or "") + " " + ep.description).split()),
            "tags": [ep.tag],
            "parameters": params,
            "responses": responses_for(ep),
        }
        if ep.auth is not None:
            op["security"] = [{"bearer": []}]
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ep.body}}}
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    paths["/health"] = {
        "get": {
            "operationId": "health",
            "summary": "Liveness",
            "tags": ["system"],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": HEALTH}}},
                **_error_responses(400, 429, 500),
            },
        }
    }
    paths["/ready"] = {
        "get": {
            "operationId": "ready",
            "summary": "Readiness (indexer lag, database, Redis)",
            "tags": ["system"],
            "responses": {
                "200": {"description": "Ready or degraded", "content": {"application/json": {"schema": READY}}},
                **_error_responses(400, 429, 500),
                "503": {
                    "description": "Not ready (errors say why)",
                    "content": {"application/json": {"schema": ERROR}},
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
            "decimal strings (USDC has 6 decimals); every response carries `asOf`; errors use "
            "one body {statusCode, message, errors[{field, message}], timestamp, path}. "
            f"Chain id {settings.chain_id}. Live events: the websocket feed (docs/feed.md).",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(COMPONENTS.items())),
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


def _param_text(s: dict[str, Any]) -> str:
    if "enum" in s:
        return ", ".join(map(str, s["enum"]))
    if s.get("type") == "integer":
        lo, hi = s.get("minimum"), s.get("maximum")
        return "integer" + (f" [{lo}..{hi}]" if hi != MAX_INT else (f" ≥ {lo}" if lo != -MAX_INT else ""))
    if s.get("type") == "boolean":
        return "true | false"
    if s.get("pattern") == TEXT_PATTERN:
        return f"text (≤ {s['maxLength']} characters, no control characters)"
    if s.get("pattern") == ADDRESS_RE.pattern:
        return "address"
    if s.get("pattern") == TIME_RE.pattern:
        return "RFC 3339 date-time or unix seconds"
    if s.get("pattern") == CURSOR_RE.pattern:
        return "cursor from meta.nextCursor"
    return f"`{s['pattern']}`" if "pattern" in s else str(s.get("type", ""))


def _schema_text(s: dict[str, Any]) -> str:
    if "$ref" in s:
        return str(s["$ref"]).rsplit("/", 1)[-1]
    if s.get("type") == "array":
        return _schema_text(s["items"]) + "[]"
    if s.get("type") == "object":
        return "{" + ", ".join(s.get("properties", {})) + "}"
    return str(s.get("type", "any"))


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
                    default = f", default {s['default']}" if "default" in s else ""
                    req = " (required)" if p["required"] else ""
                    text = _param_text(s)
                    if len(text) > 60 and p.get("description"):
                        text = p["description"]
                    cells.append(f"`{p['name']}`{req}: {text}{default}")
                out.append("\n  Query: " + "; ".join(cells))
            if "requestBody" in op:
                props = op["requestBody"]["content"]["application/json"]["schema"].get("properties", {})
                out.append("\n  Body (JSON): " + (", ".join(f"`{k}`" for k in props) or "`{}`"))
            ok = next(c for c in op["responses"] if c.startswith("2"))
            body = op["responses"][ok].get("content", {}).get("application/json", {}).get("schema", {})
            props = body.get("properties", {})
            if "data" in props:
                shape = f"`data`: {_schema_text(props['data'])}"
                if "meta" in props:
                    shape += f", `meta`: {_schema_text(props['meta'])}"
            else:
                shape = _schema_text(body)
            errors = ", ".join(c for c in op["responses"] if not c.startswith("2"))
            out.append(f"\n  {ok}: {shape}. Errors: {errors}.")
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

        # the same text as docs/schemas/api/openapi.json (tests/api/test_api_typescript.py)
        sys.stdout.write(json.dumps(spec(_settings), indent=1, ensure_ascii=False) + "\n")
