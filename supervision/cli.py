"""The command line: ``position-supervisor`` / ``python -m supervision``.

Commands::

    run --config FILE        run the supervisor until SIGTERM/SIGINT
    check --config FILE      validate the configuration only
    status --config FILE     who owns each account (lease epoch, since, waiting processes,
                             installation alarms), then the open positions from the
                             database (--all: closed ones too)
    history SYMBOL --config FILE
                             the event journal and signal history of one symbol
    confirm-installation --account A --config FILE
                             an operator confirms the orders of another installation seen
                             on the account: its entries resume
    demo                     embedded PostgreSQL + sim/ exchange + four signal sources

``--config`` defaults to ``$PS_CONFIG``. Exit codes: 0 ok, 2 invalid configuration or usage
(nothing has connected yet; one line on stderr, ``configuration error: <key path>: <problem>``),
1 runtime failure (its message redacted of every configured secret).

``status``, ``history`` and ``confirm-installation`` only use the database: they load the
configuration without requiring the trading keys (``require_credentials=False``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from actors.model import Side
from actors.state import JournalEvent, Position, SignalRecord
from infra.config import Config, ConfigError, load_config
from infra.logs import SecretRedactor, setup_logging

__all__ = ["main", "render_history", "render_leases", "render_status"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

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


def render_status(
    positions: Sequence[Position], marks: Mapping[tuple[str, str], float], now: float
) -> str:
    """The ``status`` table: account, symbol, status, side, size, entry, stop, uPnL, age."""
    header = ("ACCOUNT", "SYMBOL", "ID", "STATUS", "SIDE", "SIZE", "ENTRY", "STOP", "UPNL", "AGE")
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
                "-" if pnl is None else f"{pnl:+.2f}",
                _age(now - p.created_at),
            )
        )
    if not rows:
        return "no positions"
    return _table(header, rows)


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}"


#: A process whose heartbeat is older than this is not listed as waiting.
_PROCESS_STALE_S = 60.0


def render_leases(
    accounts: Sequence[str],
    leases: Mapping[str, Any],
    processes: Sequence[Any],
    alerts: Sequence[Any],
    installation: Any,
) -> str:
    """Who owns each account (I7): its owner (host, pid), lease epoch, since when, when the
    lease expires, the processes waiting for it; then this database's installation id and
    every installation alarm not confirmed. ``leases``: ``account -> LeaseInfo``;
    ``processes``: ``ProcessRow``s; ``alerts``: ``InstallationAlert``s (pure; tested)."""
    rows = []
    for account in accounts:
        lease = leases.get(account)
        waiting = [
            f"pid {p.pid} on {p.host}"
            for p in processes
            if account in p.waits and p.stopped_at is None and p.age_s < _PROCESS_STALE_S
        ]
        if lease is None or lease.owner is None:
            owner = "-" if lease is None else f"none (released by pid {lease.pid} on {lease.host})"
            epoch = "-" if lease is None else str(lease.epoch)
            rows.append((account, owner, epoch, "-", "-", ", ".join(waiting) or "-"))
            continue
        expiry = (
            f"EXPIRED {lease.now - lease.expires_at:.1f}s ago"
            if lease.expired and lease.expires_at is not None
            else f"in {lease.remaining_s:.1f}s"
        )
        rows.append(
            (
                account,
                f"pid {lease.pid} on {lease.host}",
                str(lease.epoch),
                _ts(lease.since) if lease.since is not None else "-",
                expiry,
                ", ".join(waiting) or "-",
            )
        )
    out = [_table(("ACCOUNT", "OWNER", "EPOCH", "SINCE", "LEASE", "WAITING"), rows)]
    out.append(f"installation {installation.label}")
    for a in alerts:
        if a.confirmed_at is not None:
            continue
        out.append(
            f"ALARM {a.account}: orders of installation {a.label} (another database), e.g. "
            f"{a.client_id} on {a.symbol}, seen {_ts(a.seen_at)} by {a.seen_by}: entries "
            f"stopped until `position-supervisor confirm-installation --account {a.account}`"
        )
    return "\n".join(out)


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
    setup_logging(level, json_lines, cfg.secret_values())


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


def _leases(dsn: str) -> Any:
    from infra.store.ownership import LeaseStore  # noqa: PLC0415

    return LeaseStore(dsn, timeout=10.0)


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load(args, require_credentials=False)  # reads the database only
    setup_logging("WARNING", False, cfg.secret_values())

    def show(store: Any, dsn: str) -> int:
        positions: list[Position] = store.positions(args.account, include_terminal=args.all)
        marks = _fetch_marks(cfg) if args.marks else {}
        print(render_status(positions, marks, time.time()))
        accounts = [args.account] if args.account else list(cfg.accounts)
        with _leases(dsn) as leases:
            owners = render_leases(
                accounts,
                leases.leases(accounts),
                leases.processes(),
                leases.alerts(accounts),
                leases.installation(),
            )
        print()
        print(owners)
        return EXIT_OK

    return _with_store(cfg, show)


def cmd_confirm_installation(args: argparse.Namespace) -> int:
    cfg = _load(args, require_credentials=False)  # writes the confirmation only
    setup_logging("WARNING", False, cfg.secret_values())
    if args.account not in cfg.accounts:
        print(
            f"confirm-installation: unknown account {args.account!r}; {cfg.source} configures "
            f"{', '.join(sorted(cfg.accounts))}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    by = f"{getpass.getuser()}@{socket.gethostname()}"

    def confirm(store: Any, dsn: str) -> int:
        with _leases(dsn) as leases:
            done = leases.confirm(args.account, by, args.installation)
        if not done:
            print(f"nothing to confirm: account {args.account} has no unconfirmed alarm")
        for a in done:
            print(
                f"confirmed: account {a.account}, installation {a.label} ({a.client_id} on "
                f"{a.symbol}, seen {_ts(a.seen_at)}) by {by}; entries resume within a few "
                "seconds"
            )
        return EXIT_OK

    return _with_store(cfg, confirm)


def cmd_history(args: argparse.Namespace) -> int:
    cfg = _load(args, require_credentials=False)  # reads the database only
    setup_logging("WARNING", False, cfg.secret_values())
    accounts = [args.account] if args.account else list(cfg.accounts)

    def show(store: Any, dsn: str) -> int:
        for i, account in enumerate(accounts):
            entries = store.journal(account, args.symbol)
            events = [(e.event, e.cause_type) for e in entries]
            signals = store.signals(account, args.symbol)
            if i:
                print()
            print(f"== {account}:{args.symbol}")
            print(render_history(events, signals))
        return EXIT_OK

    return _with_store(cfg, show)


def cmd_demo(args: argparse.Namespace) -> int:
    from supervision.demo import run_demo  # noqa: PLC0415

    return run_demo(args.config, duration=args.duration, ui=not args.no_ui)


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
        help="positions from the database",
        description="A table of open positions from the database: account, symbol, status, "
        "side, size, entry, stop, unrealised PnL (with --marks) and age.",
    )
    config_arg(status)
    status.add_argument("--account", help="one account only")
    status.add_argument("--all", action="store_true", help="closed and failed positions too")
    status.add_argument(
        "--marks", action="store_true", help="fetch mark prices from the exchange for the PnL"
    )
    status.set_defaults(fn=cmd_status)

    history = sub.add_parser(
        "history",
        help="the event journal of one symbol",
        description="Every journal event (transition and its cause) and every signal of SYMBOL.",
    )
    history.add_argument("symbol", metavar="SYMBOL", help="exchange symbol id, e.g. BTCUSDT")
    config_arg(history)
    history.add_argument("--account", help="one account only (default: every account)")
    history.set_defaults(fn=cmd_history)

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
        help="the demo: embedded PostgreSQL, sim/ exchange, four signal sources",
        description="Run the supervisor against the local sim/ exchange and signal feed with an "
        "embedded PostgreSQL, with a live status view. Ctrl-C stops it.",
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
        return code
    except ConfigError as exc:
        print(f"configuration error: {_one_line(str(exc))}", file=sys.stderr)
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
