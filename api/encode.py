"""JSON encoding for responses: orjson, Decimal as a string, amounts as decimal strings.

Money never passes through a float: token amounts arrive from PostgreSQL as Decimal/int base
units and leave as strings with a fixed number of decimals ("12.345678").
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_DOWN, Decimal
from typing import Any

import orjson
from starlette.responses import Response

USDC_DECIMALS = 6
_Q6 = Decimal(1).scaleb(-6)


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return format(obj, "f")
    if isinstance(obj, bytes | memoryview):
        return "0x" + bytes(obj).hex()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return dumps(content)


def units(x: int | Decimal | None, decimals: int = USDC_DECIMALS) -> str | None:
    """Base units → decimal string with `decimals` places, exact: 12345678 → "12.345678"."""
    if x is None:
        return None
    n = int(x)
    sign = "-" if n < 0 else ""
    q, r = divmod(abs(n), 10**decimals)
    return f"{sign}{q}.{r:0{decimals}d}" if decimals else f"{sign}{q}"


def ratio(num: int | Decimal, den: int | Decimal, places: int = 6) -> str | None:
    """num/den rounded down to `places` decimals, as a string; None when den is 0."""
    if not den:
        return None
    d = (Decimal(int(num)) / Decimal(int(den))).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    return f"{d:f}"


def hexs(b: bytes | None) -> str | None:
    return None if b is None else "0x" + bytes(b).hex()


def iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
