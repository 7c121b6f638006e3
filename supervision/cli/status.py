"""``status``: who owns each account, the open positions and the latest closed ones, the
paused and quarantined symbols; with ``--marks`` the unrealised PnL from the exchange's mark
prices, with ``--verify`` whether each stop rests on the exchange (exit 3 when one does not).

Main thread; blocking. It reads the database only (no trading keys), unless ``--verify``
asks the exchange (which needs them). The exchange's failures never fail the command: a
missing mark leaves its PnL blank, an unanswered stop reads ``unknown (<why>)``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from actors.messages import CallResult
from actors.model import OrderKind
from actors.state import Position
from infra.config import Config
from supervision.cli.common import (
    EXIT_OK,
    EXIT_STOP_MISSING,
    config_arg,
    load_for_reading,
    one_line,
    redactor,
    select_accounts,
    with_store,
)
from supervision.cli.render import render_closed, render_controls, render_owners, render_status
from supervision.presentation import control_doc, exit_price, realised_pnl, unrealised_pnl

__all__ = ["add_parser", "cmd_status", "fetch_marks", "verify_stops"]

log = logging.getLogger("supervision.cli")


def fetch_marks(cfg: Config, timeout: float = 3.0) -> dict[tuple[str, str], float]:
    """Mark prices from each Binance-style account's public ``premiumIndex`` (best effort)."""
    marks: dict[tuple[str, str], float] = {}
    for name, acc in cfg.accounts.items():
        if acc.exchange not in ("binanceusdm", "binance"):
            continue
        try:
            with urllib.request.urlopen(
                f"{acc.rest_url}/fapi/v1/premiumIndex", timeout=timeout
            ) as r:
                data: Any = json.load(r)
        except Exception as exc:
            log.warning("no mark prices for %s: %s", name, exc)
            continue
        for row in data if isinstance(data, list) else [data]:
            try:
                marks[(name, str(row["symbol"]))] = float(row["markPrice"])
            except (KeyError, TypeError, ValueError):
                continue
    return marks


_RESTING = frozenset({"new", "open", "partially_filled"})


def verify_stops(cfg: Config, positions: Sequence[Position]) -> dict[int, str]:
    """What the exchange says of each open position's current stop-loss (``--verify``).

    One ``fetch_account`` per account (its open orders, as the sync reads them) through the
    ccxt adapter; a stop not listed there is looked up by its client order id, so that the
    answer says what happened to it. Values: ``resting``, ``MISSING (<state>)``,
    ``no stop yet`` (no stop-loss placed: the entry is not filled), ``unknown (<why>)``
    when the exchange cannot be asked. Main thread; blocking; never raises for exchange
    errors.
    """
    from infra.exchange import CcxtExchange  # noqa: PLC0415
    from supervision.wiring import venue_config  # noqa: PLC0415

    out: dict[int, str] = {}
    by_account: dict[str, list[Position]] = {}
    for p in positions:
        if not p.status.terminal:
            by_account.setdefault(p.key.account, []).append(p)
    for name, mine in sorted(by_account.items()):
        acc = cfg.accounts.get(name)
        if acc is None:
            for p in mine:
                out[p.id] = "unknown (account not configured)"
            continue
        ex = CcxtExchange(name, venue_config(acc), environ={})
        try:
            try:
                view = ex.fetch_account(name)
            except Exception as exc:
                for p in mine:
                    out[p.id] = f"unknown ({redactor.redact(one_line(str(exc)))[:80]})"
                continue
            for p in mine:
                stop = p.latest(OrderKind.STOP_LOSS)
                if stop is None:
                    out[p.id] = "no stop yet"
                    continue
                listed = {o.client_id for o in view.open_orders.get(p.key.symbol, ())}
                if stop.client_id in listed:
                    out[p.id] = "resting"
                    continue
                reply = ex.lookup_order(p.key, stop.client_id, trigger=True)
                if reply.result is CallResult.UNKNOWN:
                    out[p.id] = f"unknown ({reply.reason or 'no answer'})"
                elif reply.result is CallResult.FOUND and reply.status in _RESTING:
                    out[p.id] = "resting"
                else:
                    what = reply.status if reply.result is CallResult.FOUND else "not found"
                    out[p.id] = f"MISSING ({stop.client_id}: {what})"
        finally:
            ex.close()
    return out


def _position_json(
    p: Position, marks: Mapping[tuple[str, str], float], stops: Mapping[int, str] | None
) -> dict[str, Any]:
    mark = marks.get((p.key.account, p.key.symbol))
    stop = p.latest(OrderKind.STOP_LOSS)
    doc: dict[str, Any] = {
        "account": p.key.account,
        "symbol": p.key.symbol,
        "id": p.id,
        "status": p.status.value,
        "side": p.side.value,
        "size": p.qty if p.qty > 0 else p.requested_qty,
        "entry_price": p.entry_price,
        "stop_price": p.stop_price,
        "stop_confirmed": p.stop_confirmed,
        "stop_client_id": stop.client_id if stop is not None else None,
        "take_profit": p.take_profit,
        "source": p.source,
        "signal_id": p.signal_id,
        "created_at": p.created_at,
    }
    if p.status.terminal:
        doc.update(
            closed_at=p.closed_at or p.updated_at,
            reason=p.close_reason.value if p.close_reason else p.fail_reason,
            exit_price=exit_price(p),
            realised_pnl=realised_pnl(p),
        )
    else:
        doc.update(mark_price=mark, unrealised_pnl=unrealised_pnl(p, mark))
        if stops is not None:
            doc["stop_on_exchange"] = stops.get(p.id)
    return doc


def cmd_status(args: argparse.Namespace) -> int:
    # Reads the database only, unless --verify asks the exchange (which needs the keys).
    cfg = load_for_reading(args, require_credentials=bool(args.verify))
    accounts = select_accounts(cfg, args.account)

    def show(store: Any, dsn: str) -> int:
        from infra.store.reads import account_owners, installation_view  # noqa: PLC0415

        owners = account_owners(dsn, accounts)
        installation = installation_view(dsn, accounts)
        controls = [c for c in store.controls() if c.key.account in accounts]
        everything: list[Position] = [
            p for a in accounts for p in store.positions(a, include_terminal=True)
        ]
        open_ = [p for p in everything if not p.status.terminal]
        closed = sorted(
            (p for p in everything if p.status.terminal),
            key=lambda p: (p.closed_at or p.updated_at, p.id),
            reverse=True,
        )
        if not args.all:
            closed = closed[: args.closed]
        marks = fetch_marks(cfg) if args.marks else {}
        stops = verify_stops(cfg, open_) if args.verify else None
        if args.json:
            doc = {
                "accounts": [
                    {
                        "account": o.account,
                        "owned": o.owned,
                        "host": o.host,
                        "pid": o.pid,
                        "backend_pid": o.backend_pid,
                        "application": o.application,
                        "client": o.client,
                        "since": o.since,
                        "epoch": o.epoch,
                        "lease_expires_in": o.expires_in,
                        "waiting": list(o.waiting),
                    }
                    for o in owners
                ],
                "installation": {
                    "id": installation.label,
                    "alarms": [
                        {"account": a, "installation": f"{i:06d}", "client_id": c, "symbol": s}
                        for a, i, c, s in installation.alarms
                    ],
                },
                "open": [_position_json(p, marks, stops) for p in open_],
                "closed": [_position_json(p, marks, None) for p in closed],
                "controls": [control_doc(c) for c in controls],
            }
            print(json.dumps(doc, indent=2))
        else:
            print(render_status(open_, marks, time.time(), stops))
            print()
            print(f"closed ({'all' if args.all else f'last {args.closed}'}):")
            print(render_closed(closed))
            print()
            print(render_controls(controls))
            print()
            print(render_owners(owners, installation))
        if stops is not None and any(v.startswith("MISSING") for v in stops.values()):
            return EXIT_STOP_MISSING
        return EXIT_OK

    return with_store(cfg, show)


def add_parser(sub: Any) -> None:
    """The ``status`` subcommand on ``sub`` (the parser's subparsers)."""
    status = sub.add_parser(
        "status",
        help="owners, open and closed positions from the database",
        description="Open positions from the database (account, symbol, status, side, size, "
        "entry, stop, unrealised PnL with --marks, age), the latest closed ones (close time, "
        "exit price, realised PnL, reason) and which process owns each account. Exit 3 when "
        "--verify finds a stop that does not rest on the exchange.",
    )
    config_arg(status)
    status.add_argument("--account", help="one account only")
    status.add_argument("--all", action="store_true", help="every closed and failed position")
    status.add_argument(
        "--closed",
        type=int,
        default=10,
        metavar="N",
        help="how many of the latest closed positions to show (default 10)",
    )
    status.add_argument(
        "--marks", action="store_true", help="fetch mark prices from the exchange for the PnL"
    )
    status.add_argument(
        "--verify",
        action="store_true",
        help="ask the exchange (needs the account's keys) whether each stop rests there",
    )
    status.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    status.set_defaults(fn=cmd_status)
