"""Each invariant of the simulation can fail: broken on purpose (the exchange, the store or the
core sabotaged inside the test), some seed among the first few finds it, named. The defect
seeds (``test_defect_seeds.py``) cover the rest: ``risk_unchecked``, ``stop_churn``,
``orphan_stop``, ``close_reason``, ``late_entry``, ``answer_not_recorded``, ``crash``, and
``two_positions`` is what seed 125 finds in the product (README)."""

from __future__ import annotations

import pytest

import actors.transition as core
import testkit.dst.invariants as inv
from actors.messages import CallResult
from actors.model import Key
from actors.ports import OrderReply, OrderRequest
from actors.position_actor import PositionShell
from actors.state import Commit, SignalOutcome, SignalRecord
from testkit.dst.exchange import SimExchange
from testkit.dst.runner import Case, run_case
from testkit.dst.store import SimStore
from tests.dst.defects import DEFECTS


def _first_finding(invariant: str, seeds: int = 40) -> int:
    for seed in range(seeds):
        out = run_case(Case(seed), trace=False)
        if out.violation is not None and out.violation.name == invariant:
            return seed
    raise AssertionError(f"no seed of {seeds} found {invariant}")


def test_entry_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    real = SimExchange.place_order

    def twice(self: SimExchange, req: OrderRequest) -> OrderReply:
        reply = real(self, req)
        return real(self, req) if req.kind.value == "entry" else reply

    monkeypatch.setattr(SimExchange, "place_order", twice)
    _first_finding("entry_twice")


def test_unprotected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core._Step, "place_stop", lambda self, why: None)
    _first_finding("unprotected")


def test_foreign_close(monkeypatch: pytest.MonkeyPatch) -> None:
    DEFECTS["A3"].apply(monkeypatch)  # cancel outcomes ignored, no sweep ...

    def refused(self: SimExchange, key: Key, client_id: str, trigger: bool) -> OrderReply:
        return OrderReply(CallResult.UNKNOWN, "rate_limited", retry_after=1.0)

    monkeypatch.setattr(SimExchange, "cancel_order", refused)  # ... every cancel 429 ...
    monkeypatch.setattr(inv, "ORPHAN_SETTLE_S", 1e9)  # ... unreported, until one trades
    _first_finding("foreign_close")


def test_signal_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    real = PositionShell._signal_decided

    def silent(self: PositionShell, rec: SignalRecord) -> None:
        if rec.outcome is not SignalOutcome.ACCEPTED:
            real(self, rec)

    monkeypatch.setattr(PositionShell, "_signal_decided", silent)
    _first_finding("signal_unanswered")


def test_db_exchange_disagree(monkeypatch: pytest.MonkeyPatch) -> None:
    real = SimStore.commit

    def forgetful(self: SimStore, commit: Commit) -> None:
        pos = commit.position
        if pos is not None and pos.status.terminal and pos.id in self.positions:
            return  # a close that never reaches the database
        real(self, commit)

    monkeypatch.setattr(SimStore, "commit", forgetful)
    _first_finding("db_exchange_disagree")
