"""A time parameter: unix seconds and RFC 3339 name the same instants, up to 9999-12-31T23:59:59Z."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from api.params import parse_time

LAST = 253402300799  # 9999-12-31T23:59:59Z


@given(st.integers(min_value=0, max_value=LAST))
def test_unix_seconds_and_rfc3339_are_the_same_instant(n: int) -> None:
    as_text = dt.datetime.fromtimestamp(n, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert parse_time(str(n)) == parse_time(as_text) == dt.datetime.fromtimestamp(n, dt.UTC)


def test_the_last_second_of_year_9999_is_the_last_accepted() -> None:
    assert parse_time(str(LAST)) == dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    assert parse_time("100000000000") == dt.datetime.fromtimestamp(100_000_000_000, dt.UTC)  # year 5138
    assert parse_time(str(LAST + 1)) is None
    assert parse_time("1" + "0" * 12) is None
