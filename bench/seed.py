"""Starting states written straight into PostgreSQL and the sim, for the figures that need
hundreds or thousands of positions (opening them through signals would take minutes under
the exchange's order limits, and the figure is not about opening them).

Each position is written with the product's own store (:meth:`PostgresStore.commit`, the
same statement a transition writes) and its exchange side is built in the sim's engine
(``POST /_sim/seed``: the fills and the resting stop-losses with the product's client
order ids), so the two agree the way they do after a real run:

* ``active``: filled, stop-loss resting on the exchange and confirmed;
* ``unknown_entry``: entry sent, outcome unknown (a crash before the reply); on the
  exchange it filled, no stop yet;
* ``awaiting_stop``: filled, its stop-loss sent with the outcome unknown; ``rests`` says
  whether the exchange has it;
* ``closing``: a close sent, outcome unknown; on the exchange it filled (position flat).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actors.messages import Recover
from actors.model import Key, OrderKind, OrderRecord, OrderState, Side, Status
from actors.state import Commit, JournalEvent, Position, client_order_id
from bench.harness import ACCOUNT, SimProc

STATES = ("active", "unknown_entry", "awaiting_stop", "closing")


@dataclass(frozen=True)
class Seeded:
    """One seeded position: its key, id, stop price and trailing distance."""

    key: Key
    id: int
    state: str
    entry: float
    stop: float
    trailing: float | None


def seed(
    store: Any,
    sim: SimProc,
    plan: Sequence[tuple[str, str]],
    *,
    qty: float = 1.0,
    stop_pct: float = 0.02,
    trailing_pct: float | None = None,
    rests: bool | str = True,
    batch: int = 500,
) -> list[Seeded]:
    """Write ``plan`` (``(symbol, state)`` pairs) into ``store`` and the sim.

    ``trailing_pct``: give ``active`` positions a trailing distance of that fraction of the
    entry. ``rests``: for ``awaiting_stop``, whether the stop is on the exchange (half of
    them when "half").
    """
    marks: dict[str, float] = sim.call("GET", "/_sim/prices")
    ids = list(store.allocate_ids(len(plan)))
    out: list[Seeded] = []
    orders: list[dict[str, Any]] = []
    stops: list[dict[str, Any]] = []
    now = time.time()
    for i, ((symbol, state), pid) in enumerate(zip(plan, ids, strict=True)):
        key = Key(ACCOUNT, symbol)
        entry = marks[symbol]
        stop = round(entry * (1 - stop_pct), 8)
        trailing = round(entry * trailing_pct, 8) if trailing_pct and state == "active" else None
        e_id = client_order_id(pid, OrderKind.ENTRY, 1)
        s_id = client_order_id(pid, OrderKind.STOP_LOSS, 1)
        c_id = client_order_id(pid, OrderKind.CLOSE, 1)
        filled = OrderRecord(
            e_id,
            OrderKind.ENTRY,
            "buy",
            qty,
            OrderState.FILLED,
            None,
            qty,
            entry,
            None,
            now,
            now,
            1,
        )
        stop_rec = OrderRecord(
            s_id,
            OrderKind.STOP_LOSS,
            "sell",
            qty,
            OrderState.ACCEPTED,
            stop,
            0.0,
            None,
            None,
            now,
            now,
            1,
        )
        base = Position(
            id=pid,
            key=key,
            side=Side.LONG,
            status=Status.ACTIVE,
            source="bench",
            requested_qty=qty,
            stop_price=stop,
            created_at=now,
            updated_at=now,
            signal_id=f"seed-{pid}",
            qty=qty,
            entry_price=entry,
            trailing_distance=trailing,
            filled_at=now,
            protected_at=now,
            best_price=entry if trailing else None,
            stop_seq=1,
            version=1,
        )
        orders.append({"symbol": symbol, "side": "BUY", "qty": qty, "client_id": e_id})
        if state == "active":
            pos = Position(**{**_fields(base), "orders": (filled, stop_rec)})
            stops.append(_stop(symbol, s_id, stop))
        elif state == "unknown_entry":
            unknown = _in_flight(e_id, OrderKind.ENTRY, "buy", qty, None, now)
            pos = Position(
                **{
                    **_fields(base),
                    "status": Status.ENTRY_PLACED,
                    "qty": 0.0,
                    "entry_price": None,
                    "filled_at": None,
                    "protected_at": None,
                    "stop_seq": 0,
                    "orders": (unknown,),
                }
            )
        elif state == "awaiting_stop":
            sent = _in_flight(s_id, OrderKind.STOP_LOSS, "sell", qty, stop, now)
            pos = Position(
                **{
                    **_fields(base),
                    "status": Status.PENDING_SL,
                    "protected_at": None,
                    "sl_since": now,
                    "orders": (filled, sent),
                }
            )
            if rests is True or (rests == "half" and i % 2 == 0):
                stops.append(_stop(symbol, s_id, stop))
        elif state == "closing":
            close = _in_flight(c_id, OrderKind.CLOSE, "sell", qty, None, now)
            pos = Position(
                **{
                    **_fields(base),
                    "status": Status.CLOSING,
                    "close_seq": 1,
                    "orders": (filled, stop_rec, close),
                }
            )
            orders.append(
                {
                    "symbol": symbol,
                    "side": "SELL",
                    "qty": qty,
                    "client_id": c_id,
                    "reduce_only": True,
                }
            )
        else:
            raise ValueError(f"unknown seed state {state!r}")
        ev = JournalEvent(pid, "seeded", None, pos.status, now, {"bench": state})
        store.commit(Commit(key, Recover(key, "seed"), pos, 0, (ev,)))
        out.append(Seeded(key, pid, state, entry, stop, trailing))
    for b in range(0, max(len(orders), len(stops)), batch):
        r = sim.call(
            "POST",
            "/_sim/seed",
            {"orders": orders[b : b + batch], "stops": stops[b : b + batch]},
        )
        if r["errors"]:
            raise RuntimeError(f"sim refused seeded orders: {r['errors'][:3]}")
    return out


def _stop(symbol: str, client_id: str, trigger: float) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "side": "SELL",
        "type": "STOP_MARKET",
        "trigger": trigger,
        "client_id": client_id,
        "close_position": True,
    }


def _in_flight(
    client_id: str, kind: OrderKind, side: str, qty: float, trigger: float | None, now: float
) -> OrderRecord:
    """An order sent once at ``now`` whose outcome is unknown (what a crash mid-call leaves)."""
    return OrderRecord(
        client_id, kind, side, qty, OrderState.UNKNOWN, trigger, sent_at=now, attempts=1
    )


def _fields(p: Position) -> dict[str, Any]:
    return {name: getattr(p, name) for name in Position.__dataclass_fields__}
