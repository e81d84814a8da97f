"""Property tests (hypothesis) of the FPMM math: the Python reference obeys the rounding rules the
contract documents, and the contract's pure functions equal the reference on random inputs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.chain import Anvil
from tests.contracts import model
from tests.contracts.rpc import Codec, Rpc, words

RESERVE = st.integers(min_value=1, max_value=2**100)
AMOUNT = st.integers(min_value=0, max_value=2**100)
OUTCOME = st.sampled_from([model.OUTCOME_NO, model.OUTCOME_YES])


@given(yes=RESERVE, no=RESERVE, outcome=OUTCOME, net=AMOUNT)
def test_buy_keeps_k_and_gives_the_most_shares_that_do(yes: int, no: int, outcome: int, net: int) -> None:
    """After a buy k never decreases, and one more share out would break it (ceil is tight)."""
    new_yes, new_no, shares = model.buy_outcome(yes, no, outcome, net)
    assert new_yes * new_no >= yes * no
    assert shares >= 0
    if outcome == model.OUTCOME_YES:
        assert (new_yes - 1) * new_no < yes * no
    else:
        assert new_yes * (new_no - 1) < yes * no


@given(yes=RESERVE, no=RESERVE, outcome=OUTCOME, shares=AMOUNT)
def test_sell_burns_the_most_sets_that_keep_k(yes: int, no: int, outcome: int, shares: int) -> None:
    """A sell keeps k, leaves both reserves positive, and burning one more set would break k."""
    new_yes, new_no, _ = model.sell_outcome(yes, no, outcome, shares)
    assert new_yes * new_no >= yes * no
    assert new_yes > 0
    assert new_no > 0
    assert (new_yes - 1) * (new_no - 1) < yes * no


@given(yes=RESERVE, no=RESERVE, outcome=OUTCOME, collateral=st.integers(min_value=1, max_value=2**90))
def test_buy_then_sell_back_never_profits(yes: int, no: int, outcome: int, collateral: int) -> None:
    """Buying with fees and selling the shares straight back returns at most what was paid."""
    fee_bps = 200
    net = collateral - model.buy_fee(collateral, fee_bps)
    y1, n1, shares = model.buy_outcome(yes, no, outcome, net)
    _, _, gross = model.sell_outcome(y1, n1, outcome, shares)
    assert gross - model.sell_fee(gross, fee_bps) <= collateral
    assert gross <= net  # even without fees


@given(yes=RESERVE, no=RESERVE)
def test_prices_sum_to_one_within_a_unit(yes: int, no: int) -> None:
    """prices() floors both sides: they sum to 1e18 or 1e18 - 1."""
    y, n = model.prices(yes, no)
    assert 10**18 - 1 <= y + n <= 10**18


# ---------------------------------------------------------------- the contract against the reference


@pytest.fixture(scope="module")
def pure_calls(anvil: Anvil, deployment: dict[str, Any]) -> Iterator[Any]:
    """eth_call of OpinionMarket's pure functions over raw JSON-RPC (no state is touched)."""
    rpc = Rpc(anvil.url)
    codec = Codec("OpinionMarket")
    to = deployment["contracts"]["OpinionMarket"]

    def call(fn: str, *args: int) -> list[int]:
        return words(rpc.call("eth_call", {"to": to, "data": codec.data(fn, *args)}, "latest"))

    yield call
    rpc.close()


@pytest.mark.anvil
@settings(max_examples=300, deadline=None)
@given(yes=RESERVE, no=RESERVE, outcome=OUTCOME, amount=AMOUNT)
def test_contract_amm_functions_equal_reference(pure_calls: Any, yes: int, no: int, outcome: int, amount: int) -> None:
    """buyOutcome, sellOutcome and payoutFor on chain equal the Python reference."""
    assert tuple(pure_calls("buyOutcome", yes, no, outcome, amount)) == model.buy_outcome(yes, no, outcome, amount)
    assert tuple(pure_calls("sellOutcome", yes, no, outcome, amount)) == model.sell_outcome(yes, no, outcome, amount)
    assert pure_calls("payoutFor", 2, yes, no) == [model.payout(2, yes, no)]
