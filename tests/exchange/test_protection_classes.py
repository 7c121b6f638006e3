"""I5 end to end, one case per outcome class: whatever the exchange does to a stop-loss, a
filled position ends protected or closed within the bound.

The real supervisor and actors, the real ccxt adapter over HTTP, the sim. After the entry
fills, *every* stop-loss placement meets the same fault (armed until cleared), for each class
of the adapter's error mapping (``tests/exchange/test_outcome_classes.PLACE_CASES``). The
bound is the policy's: ``sl_max_attempts`` placements or ``sl_deadline_s``, whichever comes
first, then the emergency close's round trip. Checked against the sim's own ledger: either a
stop of ours rests on the exchange for the whole position, or the position is flat there.

Before the fix, an unknown outcome whose lookup found nothing was re-sent without counting
(175 times in 50 s for a stop ccxt could not even build), and the position sat unprotected.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from actors.messages import OpenSignal
from actors.model import Side, Status
from actors.state import Policy, Reentry, SignalRecord
from sim import SimExchange
from supervision.supervisor import Supervisor
from tests.exchange.conftest import KEY, SYMBOL, running_supervisor, wait_until
from tests.exchange.test_outcome_classes import ALGO, PLACE_CASES, Case

pytestmark = [pytest.mark.integration, pytest.mark.timeout(40)]

POLICY = Policy(
    reentry=Reentry.ALLOW,
    sl_max_attempts=3,
    sl_retry_delay_s=0.05,
    sl_deadline_s=2.0,
    lookup_delay_s=0.05,
    lookup_deadline_s=1.0,
    close_retry_delay_s=0.1,
)
#: The design's bound: the stop's deadline, then the emergency close's round trip (the
#: sim answers in milliseconds) and the timer thread's granularity.
BOUND_S = POLICY.sl_deadline_s + 2.0


@pytest.fixture
def sup(sim: SimExchange) -> Iterator[Supervisor]:
    with running_supervisor(sim, POLICY, retry_after_s=0.05) as s:
        yield s


def _exchange_state(sim: SimExchange) -> str:
    """``protected``, ``flat`` or ``unprotected``, read from the sim's own books."""
    pos = sim.positions().get(SYMBOL)
    if pos is None or pos.qty == 0:
        return "flat"
    stops = [o for o in sim.open_orders() if o.kind == "algo" and o.close_position]
    return "protected" if stops else "unprotected"


@pytest.mark.parametrize("case", PLACE_CASES, ids=lambda c: c.id)
def test_a_filled_position_ends_protected_or_closed_whatever_its_stop_meets(
    sim: SimExchange, sup: Supervisor, case: Case
) -> None:
    options = dict(case.fault)
    kind = options.pop("kind")
    if "retry_after_s" in options:
        options["retry_after_s"] = 1  # the sim's Retry-After is in whole seconds
    sim.add_fault(kind, **ALGO, **options, count=None)
    started = time.monotonic()
    sup.tell(OpenSignal(KEY, f"sig-{case.id}", "sniper", Side.LONG, 0.01, 58_000.0))

    def settled() -> str | None:
        st = _exchange_state(sim)
        pos = sup.state(KEY).position
        done = pos is not None and pos.status in (Status.ACTIVE, Status.CLOSED)
        return st if done and st != "unprotected" else None

    end = wait_until(settled, BOUND_S + 5.0, 0.02, f"{case.id}: protected or closed")
    took = time.monotonic() - started
    assert took <= BOUND_S, f"{case.id}: {end} after {took:.1f}s, bound {BOUND_S}s"
    pos = sup.state(KEY).position
    assert pos is not None
    if end == "flat":
        assert pos.status is Status.CLOSED
        entries = [e for e in sim.order_log() if e.endpoint == "order" and "e" in e.client_id[2:]]
        assert len({e.client_id for e in entries}) == 1  # one entry, closed: nothing doubled
    else:
        assert pos.status is Status.ACTIVE
    sim.clear_faults()


def test_the_bound_holds_for_a_stop_that_cannot_even_be_built(sim: SimExchange) -> None:
    """The observed defect: a short whose stop ccxt could not build (stop_loss 1.7e308 on a
    market without a price bound) was re-sent for ever. The core refuses such a signal now
    (``invalid:stop_distance``): nothing is sent at all."""
    spec = replace(sim.specs[SYMBOL], max_price=0)
    with (
        SimExchange(seed=11, specs={SYMBOL: spec}) as raw,
        running_supervisor(raw, POLICY) as s,
    ):
        decided: list[SignalRecord] = []
        s.signal_listeners.append(decided.append)
        s.tell(OpenSignal(KEY, "huge-stop", "sniper", Side.SHORT, 0.01, 1.7e308))
        wait_until(lambda: decided, 5.0, 0.02, "decided")
        assert (decided[0].outcome.value, decided[0].reason) == (
            "rejected",
            "invalid:stop_distance",
        )
        assert raw.order_log() == []
