"""I10 end to end: no entry is decided without a fresh reference price and the market's rules.

The real supervisor and actors, the real ccxt adapter over HTTP to the sim, and *no* mark
price stream: every symbol right after start, or any symbol while the stream is down. The
observed defects: 1,000 BNBUSDT at 550 (550,000 notional) accepted under ``max_notional =
100000``; a stop on the wrong side filled the entry and then forced an emergency close; a
take-profit below the mark closed the position on its first tick. Each check runs on the
price the actor fetched through ``fetch_market`` (``GET /fapi/v1/premiumIndex``), and a
refused signal leaves no order on the exchange.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.messages import OpenSignal
from actors.model import Side, Status
from actors.state import Policy, Reentry, SignalRecord
from sim import SimExchange
from supervision.supervisor import Supervisor
from tests.exchange.conftest import KEY, running_supervisor, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

POLICY = Policy(reentry=Reentry.ALLOW, max_notional=100_000.0, mark_wait_s=1.0)


class Decisions:
    def __init__(self) -> None:
        self.records: list[SignalRecord] = []

    def __call__(self, rec: SignalRecord) -> None:
        self.records.append(rec)

    def of(self, signal_id: str) -> SignalRecord:
        found: SignalRecord = wait_until(
            lambda: next((r for r in self.records if r.signal_id == signal_id), None),
            10.0,
            0.01,
            f"{signal_id} decided",
        )
        return found


@pytest.fixture
def live(sim: SimExchange) -> Iterator[tuple[Supervisor, Decisions]]:
    with running_supervisor(sim, POLICY) as sup:
        decisions = Decisions()
        sup.signal_listeners.append(decisions)
        yield sup, decisions


def _sig(sid: str, side: Side, size: float, stop: float, tp: float | None = None) -> OpenSignal:
    return OpenSignal(KEY, sid, "sniper", side, size, stop, take_profit=tp)


@pytest.mark.parametrize(
    ("signal", "reason"),
    [
        (_sig("notional", Side.LONG, 10.0, 59_000.0), "max_notional"),  # 600,000 at 60,000
        (_sig("stop-side", Side.LONG, 0.01, 61_000.0), "invalid:stop_loss_side"),
        (_sig("tp-side", Side.LONG, 0.01, 58_000.0, tp=59_000.0), "invalid:take_profit_side"),
        (_sig("short-stop", Side.SHORT, 0.01, 59_000.0), "invalid:stop_loss_side"),
        (_sig("far-stop", Side.SHORT, 0.01, 1.7e308), "invalid:stop_distance"),
        (_sig("step", Side.LONG, 0.010005, 58_000.0), "invalid:size_step"),  # step 0.00001
        (_sig("tiny", Side.LONG, 0.00005, 58_000.0), "invalid:min_notional"),  # 3 USDT < 5
    ],
    ids=lambda x: x.signal_id if isinstance(x, OpenSignal) else x,
)
def test_the_first_signal_of_a_symbol_is_checked_against_the_fetched_mark(
    sim: SimExchange, live: tuple[Supervisor, Decisions], signal: OpenSignal, reason: str
) -> None:
    sup, decisions = live
    sup.tell(signal)
    rec = decisions.of(signal.signal_id)
    assert (rec.outcome.value, rec.reason, rec.retry) == ("rejected", reason, False)
    assert sim.order_log() == []  # nothing reached the exchange
    assert sup.state(KEY).position is None


def test_a_valid_first_signal_opens_on_the_fetched_mark(
    sim: SimExchange, live: tuple[Supervisor, Decisions]
) -> None:
    sup, decisions = live
    sup.tell(_sig("good", Side.LONG, 0.01, 58_000.0, tp=63_000.0))
    assert decisions.of("good").outcome.value == "accepted"
    wait_until(
        lambda: (p := sup.state(KEY).position) is not None and p.status is Status.ACTIVE,
        10.0,
        0.02,
        "active",
    )


def test_without_a_mark_price_the_signal_is_refused_and_may_be_sent_again(
    sim: SimExchange, live: tuple[Supervisor, Decisions]
) -> None:
    sup, decisions = live
    sim.add_fault("http_502", path="/fapi/v1/premiumIndex", count=None)
    sup.tell(_sig("blind", Side.LONG, 0.01, 58_000.0))
    rec = decisions.of("blind")
    assert (rec.outcome.value, rec.reason, rec.retry) == ("rejected", "no_mark_price", True)
    assert sim.order_log() == []
    # transient: the same id is decided anew once a price can be had
    sim.clear_faults()
    decisions.records.clear()
    sup.tell(_sig("blind", Side.LONG, 0.01, 58_000.0))
    assert decisions.of("blind").outcome.value == "accepted"
