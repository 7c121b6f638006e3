"""The command line: ``position-supervisor`` / ``python -m supervision``.

Commands::

    run --config FILE        run the supervisor until SIGTERM/SIGINT
    check --config FILE      validate the configuration only
    status --config FILE     open positions from the database (--all: closed ones too)
    history SYMBOL --config FILE
                             the event journal and signal history of one symbol
    demo                     embedded PostgreSQL + sim/ exchange + four signal sources

``--config`` defaults to ``$PS_CONFIG``. Exit codes: 0 ok, 2 invalid configuration or usage
(nothing has connected yet; one line on stderr, ``configuration error: <key path>: <problem>``),
1 runtime failure (its message redacted of every configured secret).

``status`` and ``history`` only read the database: they load the configuration without
requiring the trading keys (``require_credentials=False``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from actors.model import Side
from actors.state import JournalEvent, Position, SignalRecord
from infra.config import Config, ConfigError, load_config
from infra.logs import SecretRedactor, setup_logging

__all__ = ["main", "render_history", "render_status"]

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


def _with_store(cfg: Config, fn: Callable[[Any], int]) -> int:
    from supervision.app import _close_all, open_store  # noqa: PLC0415

    store, _, closers = open_store(cfg)
    try:
        return fn(store)
    finally:
        _close_all(closers)


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load(args, require_credentials=False)  # reads the database only
    setup_logging("WARNING", False, cfg.secret_values())

    def show(store: Any) -> int:
        positions: list[Position] = store.positions(args.account, include_terminal=args.all)
        marks = _fetch_marks(cfg) if args.marks else {}
        print(render_status(positions, marks, time.time()))
        return EXIT_OK

    return _with_store(cfg, show)


def cmd_history(args: argparse.Namespace) -> int:
    cfg = _load(args, require_credentials=False)  # reads the database only
    setup_logging("WARNING", False, cfg.secret_values())
    accounts = [args.account] if args.account else list(cfg.accounts)

    def show(store: Any) -> int:
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
