"""The pure state machine never lets a non-finite exchange figure into durable state."""

from __future__ import annotations

import math

from actors.messages import OrderUpdate
from actors.model import ExchangeStatus, Key
from actors.state import Policy
from actors.transition import Context, transition
from testkit.world import priced, signal

KEY = Key("main", "BTCUSDT")


def test_nan_average_price_and_event_time_are_ignored() -> None:
    ids = iter(range(1, 100))
    ctx = Context(1000.0, Policy(), next(ids))
    opened = transition(priced(KEY, at=ctx.now), signal(), ctx)
    nan = float("nan")
    fill = OrderUpdate(KEY, "ps1e1", ExchangeStatus.FILLED, 1.0, nan, nan)
    after = transition(opened.state, fill, ctx)
    pos = after.state.position
    assert pos is not None and pos.qty == 1.0
    assert pos.entry_price is None or math.isfinite(pos.entry_price)
    assert all(math.isfinite(o.event_time) for o in pos.orders)
    assert after.commit is not None  # the fill is still written and protected
