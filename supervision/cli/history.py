"""``history SYMBOL``: the event journal (each transition with its cause) and the signal
history of one symbol, narrowed by ``--since``, ``--position`` and ``--limit``.

Main thread; reads the database only (no trading keys). A symbol neither configured nor
ever recorded is a usage error (exit 2) with the nearest configured name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import re
import time
from collections.abc import Sequence
from typing import Any

from actors.state import SignalRecord
from infra.config import Config
from supervision.cli.common import (
    EXIT_OK,
    UsageError,
    config_arg,
    load_for_reading,
    select_accounts,
    with_store,
)
from supervision.cli.render import render_history
from supervision.presentation import cause_text

__all__ = ["add_parser", "cmd_history", "parse_since"]


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str, now: float) -> float:
    """``--since``: a duration back from ``now`` (``90s``, ``30m``, ``2h``, ``7d``), an ISO
    8601 time (``2026-05-01T12:00``, UTC unless it names a zone) or epoch seconds. Raises
    ``ValueError`` naming the accepted forms."""
    t = text.strip()
    m = _RELATIVE.match(t)
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        return float(t)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a duration (30m, 2h, 7d), an ISO time "
            "(2026-05-01T12:00, UTC unless a zone is given) or epoch seconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _check_symbol(cfg: Config, accounts: Sequence[str], symbol: str, store: Any) -> None:
    """An unknown symbol (in no allow-list here and never recorded) is a usage error."""
    if any(symbol in cfg.accounts[a].symbols for a in accounts):
        return
    if any(store.signals(a, symbol) or store.journal(a, symbol) for a in accounts):
        return  # no longer allowed, but it has a history
    known = sorted({s for a in accounts for s in cfg.accounts[a].symbols})
    close = difflib.get_close_matches(symbol.upper(), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UsageError(
        f"unknown symbol {symbol!r}: not in the symbols of {', '.join(accounts)} and nothing "
        f"recorded for it; {hint}configured: {', '.join(known)}"
    )


def cmd_history(args: argparse.Namespace) -> int:
    """``history SYMBOL``: the journal and the signals of SYMBOL on each account covered."""
    cfg = load_for_reading(args)  # reads the database only
    accounts = select_accounts(cfg, args.account)
    try:
        since = parse_since(args.since, time.time()) if args.since else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")

    def show(store: Any, dsn: str) -> int:
        _check_symbol(cfg, accounts, args.symbol, store)
        for i, account in enumerate(accounts):
            entries = store.journal(account, args.symbol, args.position)
            signals: list[SignalRecord] = store.signals(account, args.symbol)
            if args.position is not None:
                signals = [r for r in signals if r.position_id == args.position]
            if since is not None:
                entries = [e for e in entries if e.event.at >= since]
                signals = [r for r in signals if r.at >= since]
            if args.limit is not None:
                entries = entries[-args.limit :]
                signals = signals[-args.limit :]
            events = [(e.event, cause_text(e.cause_type, e.cause_data)) for e in entries]
            if i:
                print()
            print(f"== {account}:{args.symbol}")
            print(render_history(events, signals))
        return EXIT_OK

    return with_store(cfg, show)


def add_parser(sub: Any) -> None:
    """The ``history`` subcommand on ``sub`` (the parser's subparsers)."""
    history = sub.add_parser(
        "history",
        help="the event journal of one symbol",
        description="Every journal event (transition and its cause: a signal's id and source) "
        "and every signal of SYMBOL.",
    )
    history.add_argument("symbol", metavar="SYMBOL", help="exchange symbol id, e.g. BTCUSDT")
    config_arg(history)
    history.add_argument("--account", help="one account only (default: every account)")
    history.add_argument(
        "--limit", type=int, metavar="N", help="the last N journal events and N signals"
    )
    history.add_argument(
        "--since", metavar="WHEN", help="only from WHEN: 30m, 2h, 7d, an ISO time or epoch seconds"
    )
    history.add_argument(
        "--position", type=int, metavar="ID", help="only the events and signals of position ID"
    )
    history.set_defaults(fn=cmd_history)
