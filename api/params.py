"""Request validation: every endpoint declares its parameters; anything else is rejected.

- Unknown and repeated query parameters are errors that name the parameter.
- `sort` values come from a per-endpoint whitelist (`field:asc|desc`); `filter` is the seed's
  `key:value,key:value` with whitelisted keys; values never reach SQL text, only bind parameters.
- Addresses: 0x + 40 hex; mixed case must carry a valid EIP-55 checksum; stored lowercase.
- Cursors are opaque: base64url(json{f: hash of the other parameters, k: last key}) + HMAC, so a
  cursor only works with the filters it was issued for.

The same declarations produce the OpenAPI document (api/openapi.py).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
from eth_utils.address import is_checksum_address

from api.errors import FieldError, ValidationFailed
from core.contracts import ADDRESS_RE

Kind = Literal["int", "str", "address", "enum", "bool", "time", "ids", "sort", "filter", "cursor"]
Where = Literal["query", "path"]

ADDRESS_TEXT = "0x + 40 hex digits; all lowercase, all uppercase, or mixed case with a valid EIP-55 checksum"
_INT = re.compile(r"^-?[0-9]{1,19}$")
MAX_INT = 2**63 - 1
# RFC 3339 date-time (upper-case T and Z, at most microseconds) or unix seconds; the OpenAPI
# document publishes these same patterns (api/openapi.py), so both accept exactly the same text.
TIME_RE = re.compile(
    r"^([0-9]{1,12}|(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$"
)
# Text refuses control characters (C0 and DEL) and nothing else.
CONTROL = "\\u0000-\\u001f\\u007f"
TEXT_PATTERN = f"^[^{CONTROL}]+$"
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: Kind
    where: Where = "query"
    required: bool = False
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    max_length: int = 200
    max_items: int = 100
    filters: tuple[Param, ...] = ()  # for kind="filter": the allowed keys
    description: str = ""


def page_params(max_limit: int = 100, default_limit: int = 20) -> tuple[Param, Param]:
    return (
        Param("page", "int", default=1, minimum=1, maximum=100_000, description="1-based page number"),
        Param("limit", "int", default=default_limit, minimum=1, maximum=max_limit, description="items per page"),
    )


def cursor_params(max_limit: int = 100, default_limit: int = 50) -> tuple[Param, Param]:
    return (
        Param("cursor", "cursor", max_length=512, description="opaque cursor from meta.nextCursor"),
        Param("limit", "int", default=default_limit, minimum=1, maximum=max_limit, description="items per page"),
    )


def parse_address(value: str) -> bytes | None:
    if not ADDRESS_RE.fullmatch(value):
        return None
    body = value[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        return None
    return bytes.fromhex(body)


def filter_pattern(p: Param) -> str:
    """The regular expression of a `filter` parameter's syntax: KEY:VALUE[,KEY:VALUE] (a key given
    twice or conflicting with its own parameter is refused too, which a pattern cannot say)."""
    alts = []
    for f in p.filters:
        if f.kind == "enum":
            value = "(" + "|".join(re.escape(c) for c in f.choices) + ")"
        elif f.kind == "address":
            value = "0x[0-9a-fA-F]{40}"
        elif f.kind == "str":
            value = f"[^,{CONTROL}]{{0,{f.max_length}}}"
        else:
            raise ValueError(f"filter key kind {f.kind} has no pattern")
        alts.append(f"{f.name}:{value}")
    one = "(" + "|".join(alts) + ")"
    return f"^{one}(,{one})*$"


def parse_time(value: str) -> dt.datetime | None:
    if not TIME_RE.fullmatch(value):
        return None
    if _INT.fullmatch(value):
        n = int(value)
        if not 0 <= n <= 253402300799:
            return None
        return dt.datetime.fromtimestamp(n, dt.UTC)
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    try:
        return t.astimezone(dt.UTC)  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
    except OverflowError:
        return None


def _one(p: Param, raw: str, errors: list[FieldError], field: str) -> Any:
    """Parses one value; appends an error naming `field` and returns None when invalid."""
    if p.kind in ("str", "cursor", "sort", "filter", "enum", "ids") and len(raw) > p.max_length:
        errors.append(FieldError(field, f"at most {p.max_length} characters"))
        return None
    if "\x00" in raw:
        errors.append(FieldError(field, "must not contain NUL characters"))
        return None
    if p.kind == "int":
        if not _INT.fullmatch(raw):
            errors.append(FieldError(field, "must be an integer"))
            return None
        n = int(raw)
        lo = p.minimum if p.minimum is not None else -MAX_INT
        hi = p.maximum if p.maximum is not None else MAX_INT
        if not lo <= n <= hi:
            errors.append(FieldError(field, f"must be between {lo} and {hi}"))
            return None
        return n
    if p.kind == "bool":
        if raw not in ("true", "false"):
            errors.append(FieldError(field, "must be true or false"))
            return None
        return raw == "true"
    if p.kind == "address":
        addr = parse_address(raw)
        if addr is None:
            errors.append(
                FieldError(field, "must be a 0x-prefixed 20-byte hex address (EIP-55 checksum if mixed case)")
            )
        return addr
    if p.kind == "enum":
        if raw not in p.choices:
            errors.append(FieldError(field, f"must be one of: {', '.join(p.choices)}"))
            return None
        return raw
    if p.kind == "time":
        t = parse_time(raw)
        if t is None:
            errors.append(FieldError(field, "must be an RFC 3339 date-time (2024-12-31T23:59:59Z) or unix seconds"))
        return t
    if p.kind == "ids":
        parts = raw.split(",")
        if len(parts) > p.max_items:
            errors.append(FieldError(field, f"at most {p.max_items} ids"))
            return None
        out: list[int] = []
        for part in parts:
            if not re.fullmatch(r"[0-9]{1,18}", part):
                errors.append(FieldError(field, "must be a comma-separated list of non-negative integers"))
                return None
            out.append(int(part))
        return list(dict.fromkeys(out))
    if p.kind == "sort":
        field_name, _, direction = raw.partition(":")
        direction = direction or "desc"
        if field_name not in p.choices or direction not in ("asc", "desc"):
            errors.append(FieldError(field, f"must be FIELD:asc|desc with FIELD one of: {', '.join(p.choices)}"))
            return None
        return (field_name, direction)
    if p.kind == "filter":
        allowed = {f.name: f for f in p.filters}
        result: dict[str, Any] = {}
        for part in raw.split(","):
            key, sep, value = part.partition(":")
            if not sep or key not in allowed:
                errors.append(FieldError(field, f"must be KEY:VALUE[,KEY:VALUE] with KEY one of: {', '.join(allowed)}"))
                return None
            if key in result:
                errors.append(FieldError(field, f"{key} given twice"))
                return None
            parsed = _one(allowed[key], value, errors, f"{field}.{key}")
            if parsed is None:
                return None
            result[key] = parsed
        return result
    if p.kind == "str":
        if _CONTROL_RE.search(raw):
            errors.append(FieldError(field, "must not contain control characters"))
            return None
        return raw
    if not CURSOR_RE.fullmatch(raw):
        errors.append(FieldError(field, "is not a valid cursor; pass meta.nextCursor unchanged"))
        return None
    return raw  # cursor: decoded by the handler with decode_cursor (needs the filter hash)


def parse(params: Sequence[Param], query: Sequence[tuple[str, str]], path: Mapping[str, str]) -> dict[str, Any]:
    """Validates path and query parameters against `params`; raises ValidationFailed naming every field."""
    errors: list[FieldError] = []
    specs = {p.name: p for p in params if p.where == "query"}
    seen: dict[str, str] = {}
    for key, value in query:
        if key not in specs:
            allowed = ", ".join(specs) or "none"
            errors.append(FieldError(key[:64], f"unknown parameter; allowed: {allowed}"))
        elif key in seen:
            errors.append(FieldError(key, "given more than once"))
        else:
            seen[key] = value
    out: dict[str, Any] = {}
    for p in params:
        raw = path.get(p.name) if p.where == "path" else seen.get(p.name)
        if raw == "":
            # the document's patterns refuse an empty value (a client leaves the parameter out)
            errors.append(FieldError(p.name, "must not be empty; leave the parameter out instead"))
            out[p.name] = None
            continue
        if raw is None:
            if p.required:
                errors.append(FieldError(p.name, "is required"))
            out[p.name] = p.default
            continue
        out[p.name] = _one(p, raw, errors, p.name)
    if errors:
        raise ValidationFailed(errors)
    return out


def filters_hash(values: Mapping[str, Any], exclude: tuple[str, ...] = ("cursor", "limit")) -> str:
    items = sorted((k, repr(v)) for k, v in values.items() if k not in exclude)
    return hashlib.sha256(repr(items).encode()).hexdigest()[:16]


def encode_cursor(secret: bytes, fhash: str, key: Sequence[Any]) -> str:
    body = orjson.dumps({"f": fhash, "k": list(key)})
    mac = hmac.new(secret, body, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")


def decode_cursor(secret: bytes, fhash: str, token: str | None, arity: int = 2) -> list[Any] | None:
    """The last key of the previous page, or None for the first page; ValidationFailed when forged
    or issued for other filters."""
    if token is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        raise ValidationFailed([FieldError("cursor", "is not a valid cursor")]) from None
    body, mac = raw[:-12], raw[-12:]
    if len(raw) < 13 or not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()[:12]):
        raise ValidationFailed([FieldError("cursor", "is not a valid cursor")])
    data = orjson.loads(body)
    if data.get("f") != fhash:
        raise ValidationFailed([FieldError("cursor", "was issued for different filters; start again without it")])
    key = data.get("k")
    if not isinstance(key, list) or len(key) != arity:
        raise ValidationFailed([FieldError("cursor", "is not a valid cursor")])
    return key
