"""argparse types shared by the command lines (keeper, scripts): a refusal says what was expected
and gives an example; argparse names the option, prints the usage and exits 2."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole_number(low: int, high: int, example: str) -> Callable[[str], int]:
    """An argparse type: a whole number within [low, high]; the refusal says what was expected and gives
    an example (argparse names the option, prints the usage and exits 2)."""

    def parse(text: str) -> int:
        try:
            value: int | None = int(text, 10)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {low} to {high}, got {text!r} (e.g. {example})"
            )
        return value

    return parse


def seconds(low: float, high: float, example: str) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds within [low, high] (nan and inf are refused)."""
    return number(low, high, "a number of seconds", example)


def number(low: float, high: float, unit: str, example: str) -> Callable[[str], float]:
    """An argparse type: a finite number of `unit` within [low, high] (nan and inf are refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # false for nan
            raise argparse.ArgumentTypeError(f"must be {unit} from {low:g} to {high:g}, got {text!r} (e.g. {example})")
        return value

    return parse
