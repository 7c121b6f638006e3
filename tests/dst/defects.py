"""The defects the simulation must find, each re-introduced by monkeypatching the function that
holds its fix with the old behaviour (inside a test only), and the invariant that names it.

Who uses it: ``tests/dst/test_defect_seeds.py`` (one test per defect, with its seed) and
``python -m tests.dst.defects NAME [--seeds N]``, which lists the seeds that find a defect
and pass on the real code (how the seeds in the README's table were chosen).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

import actors.transition as core
from actors.messages import OpenSignal, SyncObservation
from actors.model import MarketRules, OrderKind, OrderState, Status
from actors.position_actor import PositionShell
from actors.restarting import RestartingShell
from actors.state import SymbolState, Transition
from testkit.dst.runner import Case, run_case
from testkit.dst.world import Simulation

__all__ = ["DEFECTS", "Defect"]

Patch = Callable[[pytest.MonkeyPatch], None]


@dataclass(frozen=True)
class Defect:
    """``apply`` re-introduces it; ``invariant`` names what finds it; ``make`` builds the
    simulation (``store_bound_s=None`` for a store without its client-side bound)."""

    name: str
    what: str
    invariant: str
    apply: Patch
    make: Callable[..., Simulation] = Simulation


def _a1(mp: pytest.MonkeyPatch) -> None:
    """A1: without a fresh mark price the signal was decided unchecked (no stop-side,
    take-profit-side or max_notional check)."""
    real = core._on_signal
    real_check = core.check_entry
    blind: list[bool] = [False]

    def check(*args: Any) -> str | None:
        return None if blind[0] else real_check(*args)

    def unchecked(state: SymbolState, sig: OpenSignal, ctx: core.Context) -> Transition:
        if core._mark_fresh(state, ctx):
            return real(state, sig, ctx)
        assumed = replace(
            state,
            last_price=sig.stop_loss,
            last_price_at=ctx.now,
            market=state.market or MarketRules(),
        )
        blind[0] = True
        try:
            out = real(assumed, sig, ctx)
        finally:
            blind[0] = False
        st = replace(
            out.state,
            last_price=state.last_price,
            last_price_at=state.last_price_at,
            market=state.market,
        )
        return replace(out, state=st)

    mp.setattr(core, "check_entry", check)
    mp.setitem(core._HANDLERS, OpenSignal, unchecked)  # transition dispatches by this table


def _a2(mp: pytest.MonkeyPatch) -> None:
    """A2: stop attempts whose outcome was unknown were not counted: resent forever, the
    emergency close never went out."""
    mp.setattr(core._Step, "stop_budget_left", lambda self: True)


def _a3(mp: pytest.MonkeyPatch) -> None:
    """A3: cancel outcomes ignored (a 429 on a cancel left the stop resting), no orphan
    sweep, and a new entry did not wait for an earlier position's stops to be gone: a
    leftover stop rests, and may close a later position."""
    mp.setattr(core._Step, "sweep_orphans", lambda self, obs: None)
    mp.setattr(core._Step, "cancel_outcome", lambda self, out, order: self)
    mp.setattr(core, "leftovers", lambda state: ())


def _a4(mp: pytest.MonkeyPatch) -> None:
    """A4: a stop missing from a lagging open-order list was re-placed at once."""
    real = core._Step.sync

    def sync(self: Any, obs: SyncObservation) -> Any:
        out = real(self, obs)
        pos = self.pos
        if pos is not None and pos.status is Status.ACTIVE:
            stop = pos.latest(OrderKind.STOP_LOSS)
            resting = {o.client_id for o in obs.open_orders}
            if (
                stop is not None
                and stop.state is OrderState.ACCEPTED
                and (stop.client_id not in resting)
            ):
                self.place_stop("stop missing on exchange")
        return out

    mp.setattr(core._Step, "sync", sync)


def _a5(mp: pytest.MonkeyPatch) -> None:
    """A5: a position the sync found flat was closed ``closed_on_exchange`` at once, its
    own stop / close orders not looked up (nor the reason corrected when their fills showed
    up later)."""
    mp.setattr(core._Step, "flat", lambda self: self.close_flat("sync"))
    mp.setattr(core._Step, "correct_close_reason", lambda self, order, source: None)


def _c8(mp: pytest.MonkeyPatch) -> None:
    """C8: a re-sent signal id was checked for age before the replay check (neither the
    actor's memory of decided ids nor the signal history was asked)."""
    mp.setattr(PositionShell, "_answer_replay", lambda self, sig: False)
    mp.setattr(SymbolState, "decision", lambda self, signal_id: None)


def _b6(mp: pytest.MonkeyPatch) -> None:
    """B6: the store waited out a frozen database (the simulation's ``make`` removes the
    store's client-side bound; nothing to patch in the core)."""


def _unbounded(seed: int, **kw: Any) -> Simulation:
    return Simulation(seed, store_bound_s=None, **kw)


def _restart_stash(mp: pytest.MonkeyPatch) -> None:
    """The restart handed its stash straight to ``_dispatch``: a stashed ``TicksReady``
    reached ``transition()`` and crashed the actor again (found by the simulation)."""
    real = RestartingShell._restart

    def dispatching(self: RestartingShell) -> None:
        self.__dict__["_receive_live"] = self._dispatch
        try:
            real(self)
        finally:
            self.__dict__.pop("_receive_live", None)

    mp.setattr(RestartingShell, "_restart", dispatching)


DEFECTS: dict[str, Defect] = {
    d.name: d
    for d in (
        Defect("A1", "risk checks skipped before the first mark price", "risk_unchecked", _a1),
        Defect("A2", "stop attempts not counted, resent forever", "stop_churn", _a2),
        Defect("A3", "cancel outcome ignored, no orphan sweep", "orphan_stop", _a3),
        Defect("A4", "stop churn when open-order lists lag", "stop_churn", _a4),
        Defect("A5", "wrong close reason", "close_reason", _a5),
        Defect("B6", "frozen database: entries decided late", "late_entry", _b6, _unbounded),
        Defect("C8", "replayed signal not answered as recorded", "answer_not_recorded", _c8),
        Defect("restart", "a stashed wake-up crashes the restart", "crash", _restart_stash),
    )
}


def strict(make: Callable[..., Simulation]) -> Callable[..., Simulation]:
    """``make`` with no invariant excused as a known defect."""

    def build(seed: int, **kw: Any) -> Simulation:
        return make(seed, known=frozenset(), **kw)

    return build


def finds(defect: Defect, seed: int) -> str | None:
    """The violation the seed finds with the defect in (None: none, or another invariant)."""
    with pytest.MonkeyPatch.context() as mp:
        defect.apply(mp)
        out = run_case(Case(seed), trace=False, make=strict(defect.make))
    bad = out.violation
    return str(bad) if bad is not None and bad.name == defect.invariant else None


def holds(seed: int) -> str | None:
    """None when the seed passes on the real code (strictly), else its violation."""
    out = run_case(Case(seed), trace=False, make=strict(Simulation))
    return None if out.violation is None else str(out.violation)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.dst.defects")
    ap.add_argument("name", choices=sorted(DEFECTS))
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--max", type=int, default=3, help="stop after this many seeds found")
    args = ap.parse_args(argv)
    defect = DEFECTS[args.name]
    found_n = 0
    for seed in range(args.first, args.first + args.seeds):
        found = finds(defect, seed)
        if found is not None and holds(seed) is None:
            print(f"{defect.name} seed {seed}: {found}", flush=True)
            found_n += 1
            if found_n >= args.max:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
