"""Reading fields of a provider's answer (pure): every value a provider sends is checked here, once,
and a wrong one is a BadAnswer (transient: asked again, maybe of another provider) naming what was
expected, never a TypeError or ValueError that would end the process.

    quantity(value, what) -> int       a JSON-RPC QUANTITY: "0x" and hex digits, nothing else
    data(value, what) -> bytes         a JSON-RPC DATA: "0x" and an even number of hex digits
    is_hex(text) -> bool               "0x" and hex digits only (no sign, space or "_", which int(x, 16)
                                       and bytes.fromhex accept)
"""

from __future__ import annotations

import re
from typing import Any

from core.rpc_errors import BadAnswer

_HEX = re.compile(r"0x[0-9a-fA-F]*")
is_hex_match = _HEX.fullmatch


def is_hex(text: str) -> bool:
    return is_hex_match(text) is not None


def _shown(value: Any) -> str:
    return repr(value)[:80]


def quantity(value: Any, what: str) -> int:
    """A hex quantity ("0x1a"); BadAnswer naming `what` otherwise (a JSON number, "12", "0x-1")."""
    if not isinstance(value, str) or len(value) < 3 or is_hex_match(value) is None:
        raise BadAnswer(f"{what}: expected a hex quantity like '0x1a', got {_shown(value)}")
    return int(value, 16)


def data(value: Any, what: str) -> bytes:
    """Hex bytes ("0x" or "0x00ff"); BadAnswer naming `what` otherwise."""
    if not isinstance(value, str) or len(value) % 2 or is_hex_match(value) is None:
        raise BadAnswer(f"{what}: expected hex bytes like '0x00ff', got {_shown(value)}")
    return bytes.fromhex(value[2:])
