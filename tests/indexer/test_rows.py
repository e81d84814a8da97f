"""Derived rows' converters (rows.derived_line, WRITERS, row_from_record) equal the generic ones."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import fold as F
from indexer import rows as R


def value(name: str, kind: str, optional: bool) -> st.SearchStrategy[Any]:
    base: st.SearchStrategy[Any] = {
        "int": st.integers(-(2**256), 2**256),
        "bytes": st.binary(max_size=40),
        "str": st.text(),
        "bool": st.booleans(),
        "time": st.integers(0, 253_402_300_799),  # up to 9999-12-31
    }[kind]
    return st.none() | base if optional else base


def rows(table: str) -> st.SearchStrategy[Any]:
    cls = F.TABLES[table][0]
    fields = dataclasses.fields(cls)
    return st.builds(
        cls, *(value(f.name, k, "None" in str(f.type)) for f, k in zip(fields, F.KINDS[table], strict=True))
    )


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(R.DERIVED).flatmap(lambda t: st.tuples(st.just(t), rows(t))))
def test_copy_line_equals_generic_encoding(case: tuple[str, Any]) -> None:
    table, row = case
    want = R.copy_text_payload([R.WRITERS[table](8453, row)]).decode()
    assert R.derived_line(8453, table, row) == want


@pytest.mark.parametrize("bad", ["12", None])
def test_a_number_line_refuses_a_value_that_is_not_an_integer(bad: Any) -> None:
    row = F.PositionRow(1, b"\x01" * 20, yes_shares=bad)
    with pytest.raises(TypeError):
        R.derived_line(8453, "positions", row)


@given(st.sampled_from(R.DERIVED).flatmap(lambda t: st.tuples(st.just(t), rows(t))))
def test_row_key_is_the_leading_fields(case: tuple[str, Any]) -> None:
    table, row = case
    assert F.row_key(table, row) == F.row_values(row)[: F.TABLES[table][1]]


def test_snapshot_keys_are_packed_into_one_text_and_one_bytea() -> None:
    a, b = b"\x01" * 20, b"\xfe" * 20
    assert R.packed_keys([(7, a), (12, b)]) == ("7,12", a + b)
    assert R.packed_keys([(a, b), (b, a)]) == (a + b, b + a)
    with pytest.raises(ValueError, match="20 bytes"):
        R.packed_keys([(7, a[:19])])


@given(st.sampled_from(R.DERIVED).flatmap(lambda t: st.tuples(st.just(t), rows(t))))
def test_a_record_read_back_is_the_row(case: tuple[str, Any]) -> None:
    """row_from_record(derived_record(row)) == row, with integers as the text the snapshot selects."""
    table, row = case
    record = R.WRITERS[table](8453, row)
    ints = set(R.INT_IDX[table])
    as_selected = ["(0,1)", *(None if v is None else str(v) if i in ints else v for i, v in enumerate(record[1:]))]
    assert R.row_from_record(table, as_selected, 1) == row
