"""Unit tests of the pure matching model (no sockets, no threads)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.errors import BinanceError
from sim.matching import AccountEvent, AlgoEvent, MatchingEngine, OrderEvent
from sim.symbols import SymbolSpec


def engine(wallet: float = 100_000.0, leverage: int = 10, fee: float = 0.0) -> MatchingEngine:
    prices = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0}
    specs = {s: SymbolSpec.for_price(s, p) for s, p in prices.items()}
    clock = iter(range(1_000, 10_000_000))
    return MatchingEngine(
        specs, prices, wallet=wallet, leverage=leverage, taker_fee=fee, clock=lambda: next(clock)
    )


def code_of(exc: pytest.ExceptionInfo[BinanceError]) -> int:
    return exc.value.code


@pytest.mark.timeout(30)
def test_market_order_fills_at_mark_and_averages_entry() -> None:
    eng = engine()
    order, events = eng.place_market("BTCUSDT", "BUY", 0.01, client_order_id="a1")
    assert order.status == "FILLED" and order.executed_qty == 0.01 and order.avg_price == 60_000.0
    assert [type(e) for e in events] == [OrderEvent, OrderEvent, AccountEvent]
    assert [e.exec_type for e in events if isinstance(e, OrderEvent)] == ["NEW", "TRADE"]
    eng.set_mark("BTCUSDT", 62_000.0)
    eng.place_market("BTCUSDT", "BUY", 0.01)
    pos = eng.position("BTCUSDT")
    assert pos.qty == pytest.approx(0.02)
    assert pos.entry_price == pytest.approx(61_000.0)
    assert eng.unrealized("BTCUSDT") == pytest.approx(0.02 * 1_000.0)


@pytest.mark.timeout(30)
def test_closing_realises_pnl_and_flip_opens_rest_at_fill_price() -> None:
    eng = engine()
    eng.place_market("BTCUSDT", "BUY", 0.01)
    eng.set_mark("BTCUSDT", 61_000.0)
    eng.place_market("BTCUSDT", "SELL", 0.03)
    pos = eng.position("BTCUSDT")
    assert pos.qty == pytest.approx(-0.02)
    assert pos.entry_price == 61_000.0
    assert pos.realized_pnl == pytest.approx(10.0)
    assert eng.wallet == pytest.approx(100_010.0)


@pytest.mark.timeout(30)
def test_fee_is_charged_on_each_fill() -> None:
    eng = engine(fee=0.0004)
    _, events = eng.place_market("ETHUSDT", "BUY", 1.0)
    fill = next(e.fill for e in events if isinstance(e, OrderEvent) and e.fill)
    assert fill.commission == pytest.approx(1.2)
    assert eng.wallet == pytest.approx(100_000.0 - 1.2)


@pytest.mark.timeout(30)
def test_margin_check_rejects_with_2019_and_changes_nothing() -> None:
    eng = engine(wallet=1_000.0, leverage=10)
    with pytest.raises(BinanceError) as exc:
        eng.place_market("BTCUSDT", "BUY", 0.2)  # 12,000 notional / 10 = 1,200 > 1,000
    assert code_of(exc) == -2019
    assert eng.positions() == [] and eng.wallet == 1_000.0
    eng.place_market("BTCUSDT", "BUY", 0.1)  # 600 margin fits
    with pytest.raises(BinanceError) as exc:
        eng.place_market("ETHUSDT", "SELL", 2.0)  # 600 more does not
    assert code_of(exc) == -2019
    eng.place_market("BTCUSDT", "SELL", 0.1)  # reducing needs no margin


@pytest.mark.timeout(30)
def test_reduce_only_rejected_when_it_would_open_increase_or_flip() -> None:
    eng = engine()
    with pytest.raises(BinanceError) as exc:
        eng.place_market("BTCUSDT", "SELL", 0.01, reduce_only=True)
    assert code_of(exc) == -2022
    eng.place_market("BTCUSDT", "BUY", 0.02)
    for side, qty in (("BUY", 0.01), ("SELL", 0.03)):
        with pytest.raises(BinanceError) as exc:
            eng.place_market("BTCUSDT", side, qty, reduce_only=True)
        assert code_of(exc) == -2022
    order, _ = eng.place_market("BTCUSDT", "SELL", 0.02, reduce_only=True)
    assert order.status == "FILLED" and eng.positions() == []


@pytest.mark.timeout(30)
def test_client_ids_unique_among_open_orders_only() -> None:
    eng = engine()
    eng.place_market("BTCUSDT", "BUY", 0.01, client_order_id="same")
    again, _ = eng.place_market("BTCUSDT", "BUY", 0.01, client_order_id="same")  # filled: ok
    assert again.status == "FILLED"
    assert eng.position("BTCUSDT").qty == pytest.approx(0.02)
    eng.place_market("BTCUSDT", "BUY", 0.02, client_order_id="open1", parts=2)
    with pytest.raises(BinanceError) as exc:
        eng.place_market("BTCUSDT", "BUY", 0.01, client_order_id="open1")
    assert code_of(exc) == -4116
    for bad in ("x" * 37, "has space", "é"):
        with pytest.raises(BinanceError) as exc:
            eng.place_market("BTCUSDT", "BUY", 0.01, client_order_id=bad)
        assert code_of(exc) == -1100


@pytest.mark.timeout(30)
def test_quantity_filters() -> None:
    eng = engine()
    with pytest.raises(BinanceError) as exc:
        eng.place_market("BTCUSDT", "BUY", 0.000011)
    assert code_of(exc) == -1111
    with pytest.raises(BinanceError) as exc:
        eng.place_market("BTCUSDT", "BUY", 0.00001)  # 0.6 USDT < 5
    assert code_of(exc) == -4164
    with pytest.raises(BinanceError) as exc:
        eng.place_market("NOPEUSDT", "BUY", 1.0)
    assert code_of(exc) == -1121


@pytest.mark.timeout(30)
def test_partial_fills_progress_and_cancel_stops_them() -> None:
    eng = engine()
    order, _ = eng.place_market("BTCUSDT", "BUY", 0.03, client_order_id="p", parts=3)
    assert order.status == "PARTIALLY_FILLED" and order.executed_qty == pytest.approx(0.01)
    assert [o.order_id for o in eng.open_orders()] == [order.order_id]
    eng.set_mark("BTCUSDT", 60_300.0)
    eng.fill_next_part(order.order_id)
    assert eng.get_order(order.order_id).executed_qty == pytest.approx(0.02)
    canceled, _ = eng.cancel_order("BTCUSDT", client_order_id="p")
    assert canceled.status == "CANCELED" and canceled.executed_qty == pytest.approx(0.02)
    assert eng.fill_next_part(order.order_id) == []
    assert eng.position("BTCUSDT").qty == pytest.approx(0.02)
    assert eng.get_order(order.order_id).avg_price == pytest.approx(60_150.0)
    with pytest.raises(BinanceError) as exc:
        eng.cancel_order("BTCUSDT", order.order_id)
    assert code_of(exc) == -2011


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("order_type", "side", "trigger", "below", "beyond"),
    [
        ("STOP_MARKET", "SELL", 59_000.0, 59_500.0, 59_000.0),
        ("STOP_MARKET", "BUY", 61_000.0, 60_500.0, 61_000.0),
        ("TAKE_PROFIT_MARKET", "SELL", 61_000.0, 60_500.0, 61_000.0),
        ("TAKE_PROFIT_MARKET", "BUY", 59_000.0, 59_500.0, 59_000.0),
    ],
)
def test_algo_triggers_only_when_mark_crosses(
    order_type: str, side: str, trigger: float, below: float, beyond: float
) -> None:
    eng = engine()
    opening = "BUY" if side == "SELL" else "SELL"
    eng.place_market("BTCUSDT", opening, 0.01)
    algo, events = eng.place_algo(
        "BTCUSDT", side, order_type, trigger, qty=0.01, client_algo_id="s1"
    )
    assert algo.status == "NEW" and isinstance(events[0], AlgoEvent)
    assert eng.set_mark("BTCUSDT", below) == []
    events = eng.set_mark("BTCUSDT", beyond)
    statuses = [e.algo.status for e in events if isinstance(e, AlgoEvent)]
    assert statuses == ["TRIGGERING", "TRIGGERED", "FINISHED"]
    done = eng.get_algo(client_algo_id="s1")
    assert done.executed_qty == 0.01 and done.avg_price == beyond
    assert done.actual_order_id is not None
    market = eng.get_order(done.actual_order_id)
    assert market.client_order_id == "s1" and market.orig_type == order_type
    assert eng.positions() == []


@pytest.mark.timeout(30)
def test_algo_already_crossed_is_rejected_with_2021() -> None:
    eng = engine()
    for order_type, side, trigger in (
        ("STOP_MARKET", "SELL", 60_000.0),
        ("STOP_MARKET", "BUY", 59_000.0),
        ("TAKE_PROFIT_MARKET", "SELL", 59_000.0),
        ("TAKE_PROFIT_MARKET", "BUY", 61_000.0),
    ):
        with pytest.raises(BinanceError) as exc:
            eng.place_algo("BTCUSDT", side, order_type, trigger, qty=0.01)
        assert code_of(exc) == -2021
    assert eng.open_algo_orders() == []


@pytest.mark.timeout(30)
def test_close_position_closes_whatever_size_and_rejects_when_flat() -> None:
    eng = engine()
    eng.place_market("BTCUSDT", "BUY", 0.01)
    eng.place_algo(
        "BTCUSDT", "SELL", "STOP_MARKET", 59_000.0, close_position=True, client_algo_id="c"
    )
    eng.place_market("BTCUSDT", "BUY", 0.02)  # the position grows after placement
    eng.set_mark("BTCUSDT", 58_900.0)
    assert eng.positions() == []
    assert eng.get_algo(client_algo_id="c").executed_qty == pytest.approx(0.03)
    eng.place_algo(
        "BTCUSDT", "SELL", "STOP_MARKET", 58_000.0, close_position=True, client_algo_id="d"
    )
    events = eng.set_mark("BTCUSDT", 57_000.0)
    last = events[-1]
    assert isinstance(last, AlgoEvent) and last.algo.status == "REJECTED"
    assert last.algo.reject_reason == "ReduceOnly Order is rejected."


@pytest.mark.timeout(30)
def test_algo_client_ids_and_cancel() -> None:
    eng = engine()
    eng.place_algo("BTCUSDT", "SELL", "STOP_MARKET", 59_000.0, qty=0.01, client_algo_id="k")
    with pytest.raises(BinanceError) as exc:
        eng.place_algo("BTCUSDT", "SELL", "STOP_MARKET", 58_000.0, qty=0.01, client_algo_id="k")
    assert code_of(exc) == -4116
    algo, _ = eng.cancel_algo(client_algo_id="k")
    assert algo.status == "CANCELED"
    with pytest.raises(BinanceError) as exc:
        eng.cancel_algo(client_algo_id="k")
    assert code_of(exc) == -2011
    again, _ = eng.place_algo(
        "BTCUSDT", "SELL", "STOP_MARKET", 58_000.0, qty=0.01, client_algo_id="k"
    )
    assert eng.get_algo(client_algo_id="k").algo_id == again.algo_id
    with pytest.raises(BinanceError) as exc:
        eng.get_algo(client_algo_id="unknown")
    assert code_of(exc) == -2013


@pytest.mark.timeout(60)
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["BUY", "SELL"]),
            st.integers(min_value=1, max_value=50),
            st.floats(min_value=0.9, max_value=1.1),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_position_and_wallet_stay_consistent_with_fills(
    orders: list[tuple[str, int, float]],
) -> None:
    eng = engine(wallet=1e9, fee=0.0004)
    expected_qty = 0.0
    for side, steps, move in orders:
        eng.set_mark("ETHUSDT", round(eng.mark("ETHUSDT") * move, 2))
        eng.place_market("ETHUSDT", side, steps * 0.01)
        expected_qty += (1 if side == "BUY" else -1) * steps * 0.01
    assert eng.position("ETHUSDT").qty == pytest.approx(expected_qty, abs=1e-9)
    realized = sum(f.realized_pnl - f.commission for _, _, f in eng.fills)
    assert eng.wallet == pytest.approx(1e9 + realized)
    upnl = eng.unrealized("ETHUSDT")
    # closing everything at the mark realises exactly the unrealised PnL (no fee here)
    eng.taker_fee = 0.0
    before = eng.wallet
    pos = eng.position("ETHUSDT").qty
    if abs(pos) > 1e-9:
        eng.place_market(
            "ETHUSDT", "SELL" if pos > 0 else "BUY", round(abs(pos), 2), reduce_only=True
        )
    assert eng.wallet - before == pytest.approx(upnl, abs=1e-6)


@pytest.mark.timeout(30)
def test_open_orders_as_they_were() -> None:
    """``open_orders_at``: what the lag_open_orders fault answers, on a manual clock."""
    now = [1_000]
    prices = {"BTCUSDT": 60_000.0}
    specs = {"BTCUSDT": SymbolSpec.for_price("BTCUSDT", 60_000.0)}
    eng = MatchingEngine(specs, prices, clock=lambda: now[0])
    eng.place_market("BTCUSDT", "BUY", 0.03, client_order_id="e1")
    eng.place_algo(
        "BTCUSDT", "SELL", "STOP_MARKET", 59_000.0, close_position=True, client_algo_id="old"
    )
    part, _ = eng.place_market("BTCUSDT", "BUY", 0.02, client_order_id="p1", parts=2)
    now[0] = 2_000
    eng.fill_next_part(part.order_id)  # the rest fills at 2,000: closed since
    eng.cancel_algo(client_algo_id="old")
    eng.place_algo(
        "BTCUSDT", "SELL", "STOP_MARKET", 58_000.0, close_position=True, client_algo_id="new"
    )
    assert [o.client_order_id for o in eng.open_orders()] == []
    assert [a.client_algo_id for a in eng.open_algo_orders()] == ["new"]
    then_orders = eng.open_orders_at(1_500)
    assert [(o.client_order_id, o.executed_qty) for o in then_orders] == [("p1", 0.01)]
    assert [a.client_algo_id for a in eng.open_algo_orders_at(1_500)] == ["old"]
    assert [a.client_algo_id for a in eng.open_algo_orders_at(2_000)] == ["new"]
    assert eng.open_algo_orders_at(999) == [] and eng.open_orders_at(999) == []
    assert eng.open_algo_orders_at(1_500, "ETHUSDT") == []
    # the live orders were not touched by answering for the past
    assert eng.get_order(part.order_id).status == "FILLED"


@pytest.mark.timeout(30)
def test_history_is_kept_for_a_bounded_time() -> None:
    from sim.matching import HISTORY_S

    now = [0]
    specs = {"BTCUSDT": SymbolSpec.for_price("BTCUSDT", 60_000.0)}
    eng = MatchingEngine(specs, {"BTCUSDT": 60_000.0}, clock=lambda: now[0])
    for i in range(5):
        now[0] = i * 1_000
        eng.place_market("BTCUSDT", "BUY", 0.01)
    now[0] = int(HISTORY_S * 1000) + 10_000
    eng.place_market("BTCUSDT", "BUY", 0.01)
    assert len(eng._history) == 2  # only the last order's NEW and TRADE


@pytest.mark.timeout(30)
def test_trigger_veto_rejects_instead_of_executing() -> None:
    specs = {"BTCUSDT": SymbolSpec.for_price("BTCUSDT", 60_000.0)}
    eng = MatchingEngine(
        specs, {"BTCUSDT": 60_000.0}, trigger_veto=lambda algo: f"no ({algo.client_algo_id})"
    )
    eng.place_market("BTCUSDT", "BUY", 0.01)
    eng.place_algo(
        "BTCUSDT", "SELL", "STOP_MARKET", 59_000.0, close_position=True, client_algo_id="s1"
    )
    events = eng.set_mark("BTCUSDT", 58_000.0)
    assert [e.algo.status for e in events if isinstance(e, AlgoEvent)] == ["TRIGGERING", "REJECTED"]
    assert eng.get_algo(client_algo_id="s1").reject_reason == "no (s1)"
    assert eng.position("BTCUSDT").qty == pytest.approx(0.01)
