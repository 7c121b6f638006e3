"""What the live view shows (:class:`LiveView`, gathered by :func:`build_view`) and its JSON
(:func:`view_json`, ``GET /api/view``); the HTML is :mod:`supervision.live_view._page`'s.

Called on the control server's worker threads. :func:`build_view` reads the store within
its bound and never raises for a store failure: the part it could not read says why.
:func:`view_json` is pure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from actors.host import ActorCell
from actors.model import Key, OrderKind
from actors.state import JournalEvent, SignalRecord
from infra.store.postgres import JournalEntry, SymbolControl
from supervision.presentation import cause_text, control_doc, unrealised_pnl

__all__ = [
    "ControlRow",
    "JournalRow",
    "LiveView",
    "PositionRow",
    "ViewSource",
    "build_view",
    "view_json",
]


class ViewSource(Protocol):
    """The store's reads the view needs (:class:`~infra.store.PostgresStore`)."""

    def controls(self) -> list[SymbolControl]: ...

    def recent_journal(self, limit: int = 20) -> list[JournalEntry]: ...

    def recent_signals(self, limit: int = 20) -> list[SignalRecord]: ...


@dataclass(frozen=True, slots=True)
class PositionRow:
    """One open position as the page shows it. ``stop_resting``: the current stop-loss is
    confirmed resting on the exchange (accepted), ``upnl`` from the actor's last mark."""

    key: Key
    id: int
    status: str
    side: str
    size: float
    entry: float | None
    stop: float
    stop_resting: bool
    stop_client_id: str | None
    mark: float | None
    upnl: float | None
    age_s: float
    source: str


@dataclass(frozen=True, slots=True)
class ControlRow:
    """A paused or quarantined symbol, with when and why when the store tells."""

    key: Key
    paused: bool
    quarantined: bool
    paused_at: float | None = None
    paused_note: str = ""
    quarantined_at: float | None = None
    quarantined_note: str = ""


@dataclass(frozen=True, slots=True)
class JournalRow:
    at: float
    key: Key
    position_id: int | None
    kind: str
    transition: str
    cause: str
    detail: str


@dataclass(frozen=True, slots=True)
class LiveView:
    """Everything the page shows, at ``generated_at``. ``*_error``: why a part could not be
    read (the store did not answer); that part is then empty."""

    generated_at: float
    refresh_s: float
    accounts: tuple[str, ...]
    positions: tuple[PositionRow, ...]
    controls: tuple[ControlRow, ...]
    signals: tuple[SignalRecord, ...]
    journal: tuple[JournalRow, ...]
    health: tuple[tuple[str, str | None], ...]
    signals_error: str | None = None
    journal_error: str | None = None
    controls_error: str | None = None


def _journal_row(e: JournalEntry) -> JournalRow:
    ev: JournalEvent = e.event
    before = ev.status_before.value if ev.status_before else "-"
    after = ev.status_after.value if ev.status_after else "-"
    detail = ", ".join(f"{k}={v}" for k, v in sorted(ev.detail.items()))
    return JournalRow(
        ev.at,
        e.key,
        ev.position_id,
        ev.kind,
        f"{before} -> {after}",
        cause_text(e.cause_type, e.cause_data),
        detail[:300],
    )


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def build_view(
    cells: Iterable[ActorCell],
    store: ViewSource | None,
    health: Callable[[], Mapping[str, str | None]],
    *,
    accounts: Sequence[str],
    refresh_s: float,
    now: float | None = None,
    limit: int = 20,
    marks: Mapping[Key, float] | None = None,
) -> LiveView:
    """The view of the process now. ``cells``: the supervisor's actor cells (their published
    reports: positions, marks, flags); ``store``: the latest signals, journal events and
    stored controls (``None``: not shown); ``health``: the readiness checks; ``marks``: the
    newest mark price of each symbol (else the actor's last)."""
    now = time.time() if now is None else now
    positions: list[PositionRow] = []
    flags: dict[Key, ControlRow] = {}
    for cell in cells:
        r = cell.report
        p = r.position
        if p is not None and not p.status.terminal:
            stop = p.latest(OrderKind.STOP_LOSS)
            mark = marks.get(p.key) if marks is not None else None
            mark = mark if mark is not None else r.mark
            positions.append(
                PositionRow(
                    key=p.key,
                    id=p.id,
                    status=p.status.value,
                    side=p.side.value,
                    size=p.qty if p.qty > 0 else p.requested_qty,
                    entry=p.entry_price,
                    stop=p.stop_price,
                    stop_resting=p.stop_confirmed,
                    stop_client_id=stop.client_id if stop is not None else None,
                    mark=mark,
                    upnl=unrealised_pnl(p, mark),
                    age_s=max(0.0, now - p.created_at),
                    source=p.source,
                )
            )
        if r.paused or r.quarantined:
            flags[cell.key] = ControlRow(cell.key, r.paused, r.quarantined)
    controls_error = signals_error = journal_error = None
    signals: list[SignalRecord] = []
    journal: list[JournalRow] = []
    if store is not None:
        try:
            for c in store.controls():
                flags[c.key] = ControlRow(
                    c.key,
                    c.paused,
                    c.quarantined or flags.get(c.key, ControlRow(c.key, False, False)).quarantined,
                    c.paused_at,
                    c.paused_note,
                    c.quarantined_at,
                    c.quarantined_note,
                )
        except Exception as exc:
            controls_error = _short(exc)
        try:
            signals = store.recent_signals(limit)
        except Exception as exc:
            signals_error = _short(exc)
        try:
            journal = [_journal_row(e) for e in store.recent_journal(limit)]
        except Exception as exc:
            journal_error = _short(exc)
    try:
        checks = sorted(health().items())
    except Exception as exc:
        checks = [("health", f"unavailable: {_short(exc)}")]
    return LiveView(
        generated_at=now,
        refresh_s=refresh_s,
        accounts=tuple(accounts),
        positions=tuple(sorted(positions, key=lambda r: (r.key.account, r.key.symbol))),
        controls=tuple(
            sorted(
                (c for c in flags.values() if c.paused or c.quarantined),
                key=lambda c: (c.key.account, c.key.symbol),
            )
        ),
        signals=tuple(signals),
        journal=tuple(journal),
        health=tuple(checks),
        signals_error=signals_error,
        journal_error=journal_error,
        controls_error=controls_error,
    )


def view_json(view: LiveView) -> dict[str, Any]:
    """``GET /api/view``: the same as the page, as one JSON document (times epoch seconds)."""
    return {
        "generated_at": view.generated_at,
        "refresh_s": view.refresh_s,
        "accounts": list(view.accounts),
        "positions": [
            {
                "account": p.key.account,
                "symbol": p.key.symbol,
                "id": p.id,
                "status": p.status,
                "side": p.side,
                "size": p.size,
                "entry_price": p.entry,
                "stop_price": p.stop,
                "stop_resting": p.stop_resting,
                "stop_client_id": p.stop_client_id,
                "mark_price": p.mark,
                "unrealised_pnl": p.upnl,
                "age_s": p.age_s,
                "source": p.source,
            }
            for p in view.positions
        ],
        "controls": [control_doc(c) for c in view.controls],
        "signals": [
            {
                "at": s.at,
                "account": s.key.account,
                "symbol": s.key.symbol,
                "signal_id": s.signal_id,
                "source": s.source,
                "outcome": s.outcome.value,
                "reason": s.reason,
                "position_id": s.position_id,
            }
            for s in view.signals
        ],
        "journal": [
            {
                "at": j.at,
                "account": j.key.account,
                "symbol": j.key.symbol,
                "position_id": j.position_id,
                "kind": j.kind,
                "status": j.transition,
                "cause": j.cause,
                "detail": j.detail,
            }
            for j in view.journal
        ],
        "health": {name: why for name, why in view.health},
        "errors": {
            k: v
            for k, v in (
                ("signals", view.signals_error),
                ("journal", view.journal_error),
                ("controls", view.controls_error),
            )
            if v is not None
        },
    }
