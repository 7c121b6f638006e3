"""The command line: ``position-supervisor`` / ``python -m supervision``.

Commands::

    run --config FILE        run the supervisor until SIGTERM/SIGINT
    check --config FILE      validate the configuration only
    status --config FILE     who owns each account, open positions, recent closed ones
                             (--all: every closed one; --json; --verify: ask the exchange
                             whether each stop rests there)
    history SYMBOL --config FILE
                             the event journal and signal history of one symbol
                             (--limit, --since, --position)
    close SYMBOL... | --all  close positions at market (--all: every open one: flatten)
    pause [SYMBOL...]        no new entries (none named: every symbol of the account(s))
    resume [SYMBOL...]       entries again
    unquarantine SYMBOL...   lift a quarantine after repeated crashes
                             (each with --reason TEXT [--account A] [--timeout S] [--json];
                             they call the running process's control endpoint)
    confirm-installation --account A --config FILE
                             an operator confirms the orders of another installation seen
                             on the account (I7): its entries resume
    demo                     moved: the demo is ``python -m demo`` (``make run``)

``--config`` defaults to ``$PS_CONFIG``. Exit codes: 0 ok, 2 invalid configuration or usage
(nothing has connected yet; one line on stderr, ``configuration error: <key path>: <problem>``,
or ``<command>: <problem>; <hint>`` for an unknown account or symbol), 1 runtime failure (its
message redacted of every configured secret; for a control command also: the endpoint cannot
be reached, refused the request, or a symbol's request failed), 3 ``status --verify`` found a
stop that does not rest on the exchange, 4 a control command's timeout passed with a symbol
still pending (each pending one is named). Output cut short by its reader
(``history … | head``) ends the command quietly (exit 0, no traceback).

``status`` and ``history`` only read the database: they load the configuration without
requiring the trading keys (``require_credentials=False``); ``status --verify`` reads the
exchange too and needs them. The control commands need neither: only the control token
(``PS_CONTROL_TOKEN``) and ``control.address``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import getpass
import json
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from actors.messages import CallResult
from actors.model import OrderKind, Side
from actors.state import JournalEvent, Position, SignalRecord
from infra.config import Config, ConfigError, load_config
from infra.logs import SecretRedactor, setup_logging
from infra.store.reads import AccountOwner, InstallationView

__all__ = [
    "UsageError",
    "exit_price",
    "main",
    "parse_since",
    "realised_pnl",
    "render_closed",
    "render_control",
    "render_controls",
    "render_history",
    "render_owners",
    "render_status",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_STOP_MISSING = 3
EXIT_PENDING = 4


class UsageError(Exception):
    """A command line that names something the configuration or the database does not
    know (exit 2). The message says what, and how to find the right name."""


log = logging.getLogger("supervision.cli")

# The redactor of the last configuration loaded by this process's command, for the error line
# :func:`main` prints itself (that line does not go through the logging handler).
_redactor = SecretRedactor()


# --- rendering (pure; tested) -------------------------------------------------------------


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.8g}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(r) for r in rows]
    widths = [len(h) for h in header]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def unrealised_pnl(pos: Position, mark: float | None) -> float | None:
    """(mark - entry) x qty, sign-adjusted for shorts; ``None`` without a mark or a fill."""
    if mark is None or pos.entry_price is None or pos.qty <= 0:
        return None
    sign = 1.0 if pos.side is Side.LONG else -1.0
    return sign * (mark - pos.entry_price) * pos.qty


def exit_price(pos: Position) -> float | None:
    """The average price of the fills that reduced the position (its close, stop-loss and
    take-profit orders); ``None`` when none is known (e.g. closed on the exchange by hand)."""
    qty = value = 0.0
    for o in pos.orders:
        if o.kind is OrderKind.ENTRY or o.filled_qty <= 0 or o.avg_price is None:
            continue
        qty += o.filled_qty
        value += o.filled_qty * o.avg_price
    return value / qty if qty > 0 else None


def realised_pnl(pos: Position) -> float | None:
    """(exit - entry) x the quantity the exits filled, sign-adjusted for shorts (quote
    currency, before fees); ``None`` without an entry or an exit price."""
    price = exit_price(pos)
    if price is None or pos.entry_price is None:
        return None
    closed = sum(
        o.filled_qty
        for o in pos.orders
        if o.kind is not OrderKind.ENTRY and o.filled_qty > 0 and o.avg_price is not None
    )
    sign = 1.0 if pos.side is Side.LONG else -1.0
    return sign * (price - pos.entry_price) * min(closed, pos.qty or closed)


def render_status(
    positions: Sequence[Position],
    marks: Mapping[tuple[str, str], float],
    now: float,
    stops: Mapping[int, str] | None = None,
) -> str:
    """The ``status`` table: account, symbol, status, side, size, entry, stop, uPnL, age;
    with ``stops`` (``--verify``: position id -> what the exchange says of its stop) an
    ``ON EXCHANGE`` column after the stop."""
    header: tuple[str, ...] = (
        ("ACCOUNT", "SYMBOL", "ID", "STATUS", "SIDE", "SIZE", "ENTRY", "STOP")
        + (("ON EXCHANGE",) if stops is not None else ())
        + ("UPNL", "AGE")
    )
    rows = []
    for p in sorted(positions, key=lambda p: (p.key.account, p.key.symbol, p.id)):
        mark = marks.get((p.key.account, p.key.symbol))
        pnl = unrealised_pnl(p, mark) if not p.status.terminal else None
        status = p.status.value
        if p.status.terminal and (p.close_reason or p.fail_reason):
            status += f" ({p.close_reason.value if p.close_reason else p.fail_reason})"
        size = p.qty if p.qty > 0 else p.requested_qty
        rows.append(
            (
                p.key.account,
                p.key.symbol,
                str(p.id),
                status,
                p.side.value,
                _num(size),
                _num(p.entry_price),
                _num(p.stop_price),
                *((stops.get(p.id, "-"),) if stops is not None else ()),
                "-" if pnl is None else f"{pnl:+.2f}",
                _age(now - p.created_at),
            )
        )
    if not rows:
        return "no positions"
    return _table(header, rows)


def render_closed(positions: Sequence[Position]) -> str:
    """Closed and failed positions, newest first: close time, exit price, realised PnL and
    the reason (the close reason, or why the entry failed)."""
    header = (
        "ACCOUNT",
        "SYMBOL",
        "ID",
        "STATUS",
        "REASON",
        "SIDE",
        "SIZE",
        "ENTRY",
        "EXIT",
        "PNL",
        "CLOSED",
    )
    rows = []
    for p in sorted(positions, key=lambda p: (p.closed_at or p.updated_at, p.id), reverse=True):
        pnl = realised_pnl(p)
        reason = p.close_reason.value if p.close_reason else (p.fail_reason or "-")
        rows.append(
            (
                p.key.account,
                p.key.symbol,
                str(p.id),
                p.status.value,
                reason,
                p.side.value,
                _num(p.qty if p.qty > 0 else p.requested_qty),
                _num(p.entry_price),
                _num(exit_price(p)),
                "-" if pnl is None else f"{pnl:+.2f}",
                _ts(p.closed_at or p.updated_at),
            )
        )
    return _table(header, rows) if rows else "no closed positions"


def render_controls(controls: Sequence[Any]) -> str:
    """The paused and quarantined symbols (stored), since when and why."""
    rows = []
    for c in controls:
        if c.paused:
            rows.append(
                (c.key.account, c.key.symbol, "paused", _ts(c.paused_at or 0.0), c.paused_note)
            )
        if c.quarantined:
            rows.append(
                (
                    c.key.account,
                    c.key.symbol,
                    "quarantined",
                    _ts(c.quarantined_at or 0.0),
                    c.quarantined_note,
                )
            )
    if not rows:
        return "paused or quarantined: none"
    return _table(("ACCOUNT", "SYMBOL", "STATE", "SINCE", "WHY"), rows)


def _owner_text(o: AccountOwner) -> str:
    waiting = f"; waiting: {', '.join(o.waiting)}" if o.waiting else ""
    if not o.owned:
        last = (
            f" (last: supervisor pid {o.pid} on {o.host}, lease epoch {o.epoch})"
            if o.pid is not None
            else ""
        )
        return f"not owned: no supervisor manages this account now{last}{waiting}"
    who = (
        f"supervisor pid {o.pid} on {o.host}"
        if o.pid is not None
        else f"application {o.application or '?'!r}"
    )
    since = f" since {_ts(o.since)}" if o.since is not None else ""
    expires = f", expires in {o.expires_in:.1f}s" if o.expires_in is not None else ""
    backend = (
        f" (PostgreSQL backend {o.backend_pid}, from {o.client})"
        if o.backend_pid is not None
        else ""
    )
    return f"owned by {who}, lease epoch {o.epoch}{since}{expires}{backend}{waiting}"


def render_owners(
    owners: Sequence[AccountOwner], installation: InstallationView | None = None
) -> str:
    """One line per account: whether a supervisor holds its lease (I7), which, its epoch,
    since when and until when, and the processes waiting for it; then this database's
    installation id and every installation alarm not confirmed."""
    out = [_table(("ACCOUNT", "OWNER"), [(o.account, _owner_text(o)) for o in owners])]
    if installation is not None:
        out.append(f"installation {installation.label}")
        for account, other, cid, symbol in installation.alarms:
            out.append(
                f"ALARM {account}: orders of installation {other:06d} (another database), "
                f"e.g. {cid} on {symbol}: entries stopped until "
                f"`position-supervisor confirm-installation --account {account}`"
            )
    return "\n".join(out)


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}"


def render_history(
    events: Sequence[tuple[JournalEvent, str]], signals: Sequence[SignalRecord]
) -> str:
    """The ``history`` output: the journal (event, cause) then the signal history."""
    out = []
    rows = []
    for ev, cause in events:
        before = ev.status_before.value if ev.status_before else "-"
        after = ev.status_after.value if ev.status_after else "-"
        detail = ", ".join(f"{k}={v}" for k, v in sorted(ev.detail.items()))
        rows.append(
            (
                _ts(ev.at),
                "-" if ev.position_id is None else str(ev.position_id),
                ev.kind,
                f"{before} -> {after}",
                cause,
                detail,
            )
        )
    out.append("journal:")
    out.append(
        _table(("TIME", "POS", "EVENT", "STATUS", "CAUSE", "DETAIL"), rows) if rows else "(empty)"
    )
    srows = [
        (
            _ts(r.at),
            r.signal_id,
            r.source,
            r.outcome.value,
            r.reason or "-",
            "-" if r.position_id is None else str(r.position_id),
        )
        for r in signals
    ]
    out.append("")
    out.append("signals:")
    out.append(
        _table(("TIME", "SIGNAL", "SOURCE", "OUTCOME", "REASON", "POS"), srows)
        if srows
        else "(empty)"
    )
    return "\n".join(out)


# --- commands -----------------------------------------------------------------------------


def _load(args: argparse.Namespace, *, require_credentials: bool = True) -> Config:
    """The configuration named by ``--config`` or ``$PS_CONFIG``; its secrets are added to
    the redactor of :func:`main`'s error line. Raises :class:`ConfigError`."""
    path = args.config or os.environ.get("PS_CONFIG")
    if not path:
        raise ConfigError("--config", "required (or set PS_CONFIG)")
    cfg = load_config(path, require_credentials=require_credentials)
    _redactor.add(cfg.secret_values())
    return cfg


def _logging(cfg: Config, args: argparse.Namespace) -> None:
    level = getattr(args, "log_level", None) or cfg.logging.level
    json_lines = bool(getattr(args, "json_logs", False)) or cfg.logging.json
    lc = cfg.logging
    try:
        setup_logging(
            level,
            json_lines,
            cfg.secret_values(),
            file=lc.file,
            max_bytes=lc.max_bytes,
            backups=lc.backups,
        )
    except OSError as exc:  # the log file: exit 2 with one line, nothing started
        raise ConfigError("logging.file", f"cannot be opened: {exc.strerror or exc}") from None


def cmd_run(args: argparse.Namespace) -> int:
    from supervision.app import App  # noqa: PLC0415

    cfg = _load(args)
    _logging(cfg, args)
    return App(cfg).run(duration=args.duration)


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args)
    print(f"{cfg.source}: ok ({len(cfg.accounts)} accounts: {', '.join(cfg.accounts)})")
    return EXIT_OK


def _fetch_marks(cfg: Config, timeout: float = 3.0) -> dict[tuple[str, str], float]:
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


def _with_store(cfg: Config, fn: Callable[[Any, str], int]) -> int:
    """Run ``fn(store, dsn)`` against the configured database, closing it afterwards."""
    from supervision.app import _close_all, open_store  # noqa: PLC0415

    store, dsn, closers = open_store(cfg)
    try:
        return fn(store, dsn)
    finally:
        _close_all(closers)


def _accounts(cfg: Config, account: str | None) -> list[str]:
    """The accounts a command covers: ``--account`` (which must be configured) or all."""
    if account is None:
        return list(cfg.accounts)
    if account not in cfg.accounts:
        close = difflib.get_close_matches(account, list(cfg.accounts), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(
            f"unknown account {account!r}: {cfg.source} configures "
            f"{', '.join(sorted(cfg.accounts))}{hint}"
        )
    return [account]


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
    from infra.exchange import CcxtExchange, VenueConfig, env_prefix  # noqa: PLC0415

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
        prefix = env_prefix(name)
        environ = (
            {f"{prefix}_API_KEY": acc.api_key, f"{prefix}_API_SECRET": acc.api_secret}
            if acc.credentials == "env"
            else {}
        )
        ex = CcxtExchange(
            name,
            VenueConfig(
                venue=acc.exchange,
                base_url=acc.rest_url,
                enable_rate_limit=acc.enable_rate_limit,
                timeout_s=acc.timeout_s,
                require_credentials=acc.credentials == "env",
            ),
            environ=environ,
        )
        try:
            try:
                view = ex.fetch_account(name)
            except Exception as exc:
                for p in mine:
                    out[p.id] = f"unknown ({_redactor.redact(_one_line(str(exc)))[:80]})"
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
    cfg = _load(args, require_credentials=bool(args.verify))
    setup_logging("WARNING", False, cfg.secret_values())
    accounts = _accounts(cfg, args.account)

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
        marks = _fetch_marks(cfg) if args.marks else {}
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
                "controls": [
                    {
                        "account": c.key.account,
                        "symbol": c.key.symbol,
                        "paused": c.paused,
                        "paused_at": c.paused_at,
                        "paused_note": c.paused_note,
                        "quarantined": c.quarantined,
                        "quarantined_at": c.quarantined_at,
                        "quarantined_note": c.quarantined_note,
                    }
                    for c in controls
                ],
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

    return _with_store(cfg, show)


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


def _cause_text(entry: Any) -> str:
    """The journal row's cause; a signal's id and source for the signal that caused it."""
    data = entry.cause_data if isinstance(entry.cause_data, Mapping) else {}
    if entry.cause_type == "OpenSignal" and "signal_id" in data:
        return f"signal {data.get('signal_id')} from {data.get('source', '?')}"
    by = data.get("by")
    if isinstance(by, str) and by:  # an operator's request, with the reason given
        note = data.get("note")
        return f"{by}: {note}" if isinstance(note, str) and note else by
    return str(entry.cause_type)


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


def cmd_confirm_installation(args: argparse.Namespace) -> int:
    """Confirm the installation alarms of one account (I7): its entries resume."""
    cfg = _load(args, require_credentials=False)  # writes the confirmation only
    setup_logging("WARNING", False, cfg.secret_values())
    (account,) = _accounts(cfg, args.account)
    by = f"{getpass.getuser()}@{socket.gethostname()}"

    def confirm(store: Any, dsn: str) -> int:
        from infra.store.ownership import LeaseStore  # noqa: PLC0415

        with LeaseStore(dsn, timeout=10.0) as leases:
            done = leases.confirm(account, by, args.installation)
        if not done:
            print(f"nothing to confirm: account {account} has no unconfirmed alarm")
        for a in done:
            print(
                f"confirmed: account {a.account}, installation {a.label} ({a.client_id} on "
                f"{a.symbol}, seen {_ts(a.seen_at)}) by {by}; entries resume within a few "
                "seconds"
            )
        return EXIT_OK

    return _with_store(cfg, confirm)


def cmd_archive(args: argparse.Namespace) -> int:
    """Export, then drop, the months of the history before ``--before``
    (:func:`infra.store.retention.archive`)."""
    from infra.store.retention import archive, parse_before  # noqa: PLC0415

    cfg = _load(args, require_credentials=False)  # the database only
    setup_logging("WARNING", False, cfg.secret_values())
    try:
        before = parse_before(args.before)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out: Path | None = Path(args.out) if args.out else None
    if out is None and not args.dry_run:
        out = Path(f"ps-history-before-{before:%Y-%m-%d}.jsonl.gz")

    def run(store: Any, dsn: str) -> int:
        try:
            report = archive(dsn, before, out, dry_run=args.dry_run)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        verb = "would drop" if report.dry_run else "dropped"
        if report.dropped:
            months = ", ".join(m.replace("_", "-") for m in report.dropped)
            rows = ", ".join(f"{t} {n}" for t, n in report.rows.items())
            print(f"{verb} months {months} ({rows} rows)")
            if report.path is not None:
                print(f"exported to {report.path}; signal ids forgotten: {report.forgotten_ids}")
        else:
            print(f"nothing to archive before {before:%Y-%m-%d}")
        for month, ids in report.kept_open.items():
            later = ", ".join(m.replace("_", "-") for m in report.kept_after)
            print(
                f"kept {month.replace('_', '-')}{' and ' + later if later else ''}: "
                f"rows of open positions {', '.join(map(str, ids))}"
            )
        return EXIT_OK

    return _with_store(cfg, run)


def cmd_history(args: argparse.Namespace) -> int:
    cfg = _load(args, require_credentials=False)  # reads the database only
    setup_logging("WARNING", False, cfg.secret_values())
    accounts = _accounts(cfg, args.account)
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
            events = [(e.event, _cause_text(e)) for e in entries]
            if i:
                print()
            print(f"== {account}:{args.symbol}")
            print(render_history(events, signals))
        return EXIT_OK

    return _with_store(cfg, show)


class ControlError(Exception):
    """The control endpoint could not be reached, or refused the request (exit 1)."""


def control_url(cfg: Config) -> str:
    """The control endpoint's base URL (a wildcard address is reached on loopback)."""
    host = cfg.control.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.control.port}"


def call_control(
    cfg: Config, command: str, body: Mapping[str, Any], timeout_s: float
) -> dict[str, Any]:
    """POST ``body`` to ``/control/<command>`` with the token; the answer's JSON. Raises
    :class:`UsageError` without a token, :class:`ControlError` when the endpoint cannot be
    reached or refuses (its reason in the message)."""
    token = cfg.control.token
    if token is None:
        raise UsageError(
            f"set {cfg.control.token_env} to the running process's control token (the process "
            "serves the control endpoint only while it has one)"
        )
    url = f"{control_url(cfg)}/control/{command}"
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s + 15.0) as r:
            doc: dict[str, Any] = json.load(r)
            return doc
    except urllib.error.HTTPError as exc:
        try:
            why = str(json.load(exc).get("reason", ""))
        except Exception:
            why = ""
        raise ControlError(f"{url} refused the request ({exc.code}): {why or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        cause: object = getattr(exc, "reason", None) or exc
        raise ControlError(
            f"cannot reach the control endpoint at {url} ({cause}): is the supervisor running, "
            f"with {cfg.control.token_env} set and control.address = {cfg.control.address!r}?"
        ) from None


def render_control(doc: Mapping[str, Any]) -> str:
    """One line per symbol: ``account:symbol  outcome  what happened``; then what is still
    pending."""
    results = doc.get("results", [])
    if not results:
        return "nothing to do: no symbol matched"
    rows = [
        (f"{r['account']}:{r['symbol']}", str(r["outcome"]), str(r["message"])) for r in results
    ]
    out = _table(("SYMBOL", "OUTCOME", "WHAT HAPPENED"), rows)
    pending = doc.get("pending") or []
    if pending:
        out += (
            f"\nnot done within the timeout: {', '.join(pending)} (a queued request is still "
            "carried out; see `status`)"
        )
    return out


def cmd_control(args: argparse.Namespace) -> int:
    """``close``, ``pause``, ``resume``, ``unquarantine``: one call to the control endpoint."""
    cfg = _load(args, require_credentials=False)
    setup_logging("WARNING", False, cfg.secret_values())
    _accounts(cfg, args.account)
    symbols = [s.upper() for s in args.symbols]
    if args.command in ("close", "unquarantine") and not symbols and not args.all:
        raise UsageError(f"name the symbols to {args.command}, or give --all")
    if getattr(args, "all", False) and symbols:
        raise UsageError("give symbols or --all, not both")
    if not args.reason.strip():
        raise UsageError("--reason must say why")
    if not 0 < args.timeout <= 60:
        raise UsageError("--timeout must be above 0 and at most 60 seconds")
    body: dict[str, Any] = {
        "account": args.account,
        "symbols": symbols,
        "reason": args.reason,
        "timeout_s": args.timeout,
    }
    if getattr(args, "all", False):
        body["all"] = True
    try:
        doc = call_control(cfg, args.command, body, args.timeout)
    except ControlError as exc:
        print(f"{args.command}: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(doc, indent=2) if args.json else render_control(doc))
    if not doc.get("ok", False):
        return EXIT_FAILURE
    return EXIT_OK if doc.get("done") else EXIT_PENDING


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo left the product (it runs the sim/ exchange): it is ``python -m demo``."""
    print("demo: the demo is its own package now: run `python -m demo`", file=sys.stderr)
    return EXIT_CONFIG


# --- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="position-supervisor",
        description="One actor per (account, symbol): the position supervisor.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 invalid configuration or usage.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config", "-c", metavar="FILE", help="TOML configuration (default: $PS_CONFIG)"
        )

    run = sub.add_parser(
        "run",
        help="run the supervisor until SIGTERM/SIGINT",
        description="Run the supervisor. The first SIGTERM/SIGINT stops intake, lets in-flight "
        "exchange calls finish (bounded by supervisor.shutdown_grace_s) and exits 0; "
        "a second one forces exit 1.",
    )
    config_arg(run)
    run.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.add_argument("--json-logs", action="store_true", help="JSON lines on stderr")
    run.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    run.set_defaults(fn=cmd_run)

    check = sub.add_parser(
        "check", help="validate the configuration", description="Validate and exit (0 or 2)."
    )
    config_arg(check)
    check.set_defaults(fn=cmd_check)

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

    arch = sub.add_parser(
        "archive",
        help="export, then drop, months of the journal and signal history",
        description="Export every journal and signal row of the months (UTC) that end on or "
        "before --before, with the positions and orders they speak of, to one gzip'd JSON-lines "
        "file (written and fsync'd first), then drop those months' partitions and forget the "
        "signal ids decided in them (a replay of one is then judged anew: give signals a "
        "created_at, refused after signal_policy.max_signal_age_s). A month holding a row of a "
        "position still open is kept, with every later month. The current month never goes. "
        "Safe while the supervisor runs (commits wait a moment for each dropped month).",
    )
    config_arg(arch)
    arch.add_argument(
        "--before", required=True, metavar="DATE", help="YYYY-MM-DD or YYYY-MM (UTC), exclusive"
    )
    arch.add_argument(
        "--out",
        metavar="FILE",
        help="the export (default ps-history-before-DATE.jsonl.gz here; never overwritten)",
    )
    arch.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    arch.set_defaults(fn=cmd_archive)

    control_help = {
        "close": (
            "close positions at market (--all: every open one)",
            "Close each SYMBOL's open position at market (a reduce-only market order; its "
            "stop stays until the close fills), or with --all every open position of the "
            "account(s): flatten. Prints each symbol's outcome once the position is closed.",
        ),
        "pause": (
            "no new entries on symbols (protection goes on)",
            "Refuse new signals (rejected `paused`, transient) on each SYMBOL, or on every "
            "symbol of the account(s) when none is named. Open positions keep their stops, "
            "trailing stops and take-profits; closes go on. Stored: a restart keeps it.",
        ),
        "resume": (
            "take entries again on paused symbols",
            "Lift the pause of each SYMBOL, or of every symbol of the account(s).",
        ),
        "unquarantine": (
            "lift the quarantine of symbols after repeated crashes",
            "Lift the quarantine (stored: a restart keeps it) of each SYMBOL, or with --all "
            "of every quarantined one; the actor restarts at once with a fresh crash count.",
        ),
    }
    for name, (short, long_) in control_help.items():
        c = sub.add_parser(
            name,
            help=short,
            description=long_ + " Calls the running process's control endpoint "
            "(control.address) with the token from PS_CONTROL_TOKEN (control.token_env); "
            "journaled with the operator as its cause and the reason given. Exit 0 done, "
            "1 failed or refused, 4 still pending when the timeout passed.",
        )
        c.add_argument("symbols", metavar="SYMBOL", nargs="*", help="exchange symbol ids")
        config_arg(c)
        c.add_argument("--account", help="one account only (default: every account)")
        if name in ("close", "unquarantine"):
            c.add_argument(
                "--all",
                action="store_true",
                help="every open position" if name == "close" else "every quarantined symbol",
            )
        c.add_argument("--reason", required=True, help="why (journaled with the request)")
        c.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            metavar="S",
            help="wait at most S seconds for the outcome (default 10, at most 60)",
        )
        c.add_argument("--json", action="store_true", help="the endpoint's JSON answer")
        c.set_defaults(fn=cmd_control)

    confirm = sub.add_parser(
        "confirm-installation",
        help="confirm another installation's orders on an account (entries resume)",
        description="Orders with our prefix and another installation's id (another database) "
        "were seen on the account and stopped its entries. Confirm that this is known (e.g. "
        "the database was replaced, and its leftover orders are handled by hand): the "
        "supervisor trading the account resumes entries, and that installation's orders do "
        "not stop them again. Orders of another installation are never cancelled by us.",
    )
    config_arg(confirm)
    confirm.add_argument("--account", required=True, help="the account")
    confirm.add_argument(
        "--installation",
        type=int,
        metavar="ID",
        help="only this installation id (default: every unconfirmed one)",
    )
    confirm.set_defaults(fn=cmd_confirm_installation)

    demo = sub.add_parser(
        "demo",
        help="moved: run `python -m demo` (make run)",
        description="The demo is its own package outside the product: `python -m demo`.",
    )
    demo.add_argument(
        "--config", "-c", metavar="FILE", default=None, help="default: deploy/demo.toml"
    )
    demo.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS")
    demo.add_argument("--no-ui", action="store_true", help="no live view: log lines only")
    demo.set_defaults(fn=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.fn(args)
        sys.stdout.flush()  # here, where a closed pipe can still be handled
        return code
    except BrokenPipeError:
        # The reader went away (``history … | head``): what it wanted, it has. Point stdout
        # at /dev/null so that the interpreter's last flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    except ConfigError as exc:
        print(f"configuration error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as exc:
        print(f"{args.command}: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:
        logging.getLogger("supervision").error("%s failed: %r", args.command, exc, exc_info=True)
        print(f"error: {_one_line(_redactor.redact(str(exc)))}", file=sys.stderr)
        return EXIT_FAILURE


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


if __name__ == "__main__":
    sys.exit(main())
