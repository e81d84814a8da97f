"""Whole numbers from text that clients and operators type — pure.

`str.isdigit()` is true for "²" and "٣" (which `int()` refuses or reads as other digits) and
`int()` refuses more than 4,300 digits: either way a ValueError where a clear refusal was meant.
"""

from __future__ import annotations

import re

# Up to 78 digits: every uint256 (2^256 has 78) and no more; ASCII only.
_WHOLE = re.compile(r"-?[0-9]{1,78}")


def whole_number(text: str, negative: bool = False) -> int | None:
    """The integer `text` spells in ASCII decimal digits (a leading '-' when `negative`), or None."""
    t = text.strip()
    if not _WHOLE.fullmatch(t) or (t.startswith("-") and not negative):
        return None
    return int(t)
