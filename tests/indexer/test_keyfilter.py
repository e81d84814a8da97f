"""keyfilter.KeyFilter: never "absent" for a key that was added; rarely "may exist" for one that was not."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.keyfilter import KeyFilter

KEYS = st.one_of(
    st.tuples(st.integers(0, 2**64), st.binary(min_size=20, max_size=20)),
    st.tuples(st.binary(min_size=20, max_size=20), st.binary(min_size=20, max_size=20)),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["positions", "share_holdings"]), KEYS), max_size=300))
def test_every_added_key_may_exist(keys: list[tuple[str, tuple[object, bytes]]]) -> None:
    f = KeyFilter(log2_bits=12)  # small: many collisions, still no false "absent"
    for table, key in keys:
        f.add(table, key)
    assert all(f.may_exist(table, key) for table, key in keys)
    assert f.count == len(keys)


def test_keys_never_added_are_mostly_absent() -> None:
    rng = random.Random(5)
    f = KeyFilter(log2_bits=20)
    for _ in range(100_000):  # ~10 bits per key
        f.add("positions", (rng.randrange(200), rng.randbytes(20)))
    false_positives = sum(f.may_exist("positions", (rng.randrange(200), rng.randbytes(20))) for _ in range(20_000))
    assert false_positives < 20_000 * 0.08  # ~2-3 % expected with k = 3


def test_the_table_is_part_of_the_key() -> None:
    f = KeyFilter(log2_bits=20)
    key = (b"\xaa" * 20, b"\xbb" * 20)
    f.add("share_holdings", key)
    assert f.may_exist("share_holdings", key)
    assert not f.may_exist("positions", key)
