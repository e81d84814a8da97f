"""JSON Schema (OpenAPI 3.0 dialect) building blocks for the response models.

Every endpoint declares the schema of its `data` (and of its `meta` when it has one) with these
helpers, next to the handler that builds the JSON. Objects are closed (`additionalProperties:
false`) and every key is required unless listed as optional, so a handler that adds, drops or
renames a field fails the schemathesis run and the per-endpoint test (tests/api/test_api_contract.py)
until the schema — and with it /openapi.json and the generated TypeScript types — says so.

`model(name, schema)` registers a named component (#/components/schemas/<name>) and returns a
$ref to it; the generated TypeScript then has `components["schemas"]["<name>"]`.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

COMPONENTS: dict[str, Schema] = {}


def model(name: str, schema: Schema) -> Schema:
    if name in COMPONENTS and COMPONENTS[name] != schema:
        raise ValueError(f"schema component {name} declared twice with different shapes")
    COMPONENTS[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict[str, Schema], optional: tuple[str, ...] = (), description: str = "") -> Schema:
    unknown = set(optional) - set(props)
    if unknown:
        raise ValueError(f"optional keys not among the properties: {sorted(unknown)}")
    s: Schema = {
        "type": "object",
        "additionalProperties": False,
        "required": [k for k in props if k not in optional],
        "properties": props,
    }
    if description:
        s["description"] = description
    return s


def arr(items: Schema, max_items: int | None = None) -> Schema:
    s: Schema = {"type": "array", "items": items}
    if max_items is not None:
        s["maxItems"] = max_items
    return s


def null(s: Schema) -> Schema:
    """`s` or null. A $ref cannot carry siblings in OpenAPI 3.0, so it is wrapped in allOf."""
    if "$ref" in s:
        return {"allOf": [s], "nullable": True}
    out = {**s, "nullable": True}
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
AMOUNT: Schema = {
    "type": "string",
    "pattern": r"^-?[0-9]+\.[0-9]{6}$",
    "description": "USDC amount: a decimal string with exactly 6 decimals",
}
RATIO: Schema = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{6}$", "description": "a price/ratio, 6 decimals"}
UINT: Schema = {"type": "string", "pattern": r"^[0-9]+$", "description": "a non-negative integer as a string"}
TIME: Schema = {"type": "string", "format": "date-time"}
ADDRESS: Schema = {"type": "string", "pattern": r"^0x[0-9a-f]{40}$", "description": "lowercase 0x address"}
HASH: Schema = {"type": "string", "pattern": r"^0x[0-9a-f]{64}$"}
OUTCOME: Schema = enum("yes", "no", "invalid")
SIDE: Schema = enum("buy", "sell")
# active: trading; closed: ended, no outcome proposed; proposed: final after its challenge window unless
# disputed; disputed: an arbiter decides; resolved: final (claims open).
MARKET_STATUS: Schema = enum("active", "closed", "proposed", "disputed", "resolved")

PAGE_META_PROPS: dict[str, Schema] = {
    "page": INT,
    "limit": INT,
    "total": INT,
    "totalPages": INT,
    "hasNext": BOOL,
    "hasPrevious": BOOL,
}
CURSOR_META_PROPS: dict[str, Schema] = {"limit": INT, "hasNext": BOOL, "nextCursor": null(STR)}
PAGE_META = model("PageMeta", obj(PAGE_META_PROPS))
CURSOR_META = model("CursorMeta", obj(CURSOR_META_PROPS))

AS_OF = model(
    "AsOf",
    obj(
        {
            "chainId": INT,
            "blockNumber": null(INT),
            "blockHash": null(HASH),
            "safeBlock": null(INT),
            "finalizedBlock": null(INT),
        },
        description="How fresh the answer is: the last indexed block and the node's safe/finalized blocks",
    ),
)

FIELD_ERROR = model("FieldError", obj({"field": STR, "message": STR}))
ERROR = model(
    "Error",
    obj(
        {
            "statusCode": INT,
            "message": STR,
            "errors": arr(FIELD_ERROR),
            "timestamp": TIME,
            "path": STR,
        },
        description="The one error body of every 4xx/5xx answer",
    ),
)
