"""The text the reading commands print: tables of positions, owners, controls and history.

Pure functions of what the commands read (no I/O); called on the main thread by
:mod:`supervision.cli.status` and :mod:`supervision.cli.history`. Times are UTC.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from actors.state import JournalEvent, Position, SignalRecord
from infra.store.reads import AccountOwner, InstallationView
from supervision.presentation import (
    StoredControl,
    age_text,
    exit_price,
    number_text,
    realised_pnl,
    unrealised_pnl,
)

__all__ = [
    "render_closed",
    "render_controls",
    "render_history",
    "render_owners",
    "render_status",
    "table",
    "timestamp",
]


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, as wide as their widest cell."""
    rows = [list(r) for r in rows]
    widths = [len(h) for h in header]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def timestamp(t: float) -> str:
    """Epoch seconds as a UTC date and time to the millisecond."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}"


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
                number_text(size),
                number_text(p.entry_price),
                number_text(p.stop_price),
                *((stops.get(p.id, "-"),) if stops is not None else ()),
                "-" if pnl is None else f"{pnl:+.2f}",
                age_text(now - p.created_at),
            )
        )
    if not rows:
        return "no positions"
    return table(header, rows)


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
                number_text(p.qty if p.qty > 0 else p.requested_qty),
                number_text(p.entry_price),
                number_text(exit_price(p)),
                "-" if pnl is None else f"{pnl:+.2f}",
                timestamp(p.closed_at or p.updated_at),
            )
        )
    return table(header, rows) if rows else "no closed positions"


def render_controls(controls: Sequence[StoredControl]) -> str:
    """The paused and quarantined symbols (stored), since when and why."""
    rows = []
    for c in controls:
        if c.paused:
            rows.append(
                (
                    c.key.account,
                    c.key.symbol,
                    "paused",
                    timestamp(c.paused_at or 0.0),
                    c.paused_note,
                )
            )
        if c.quarantined:
            rows.append(
                (
                    c.key.account,
                    c.key.symbol,
                    "quarantined",
                    timestamp(c.quarantined_at or 0.0),
                    c.quarantined_note,
                )
            )
    if not rows:
        return "paused or quarantined: none"
    return table(("ACCOUNT", "SYMBOL", "STATE", "SINCE", "WHY"), rows)


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
    since = f" since {timestamp(o.since)}" if o.since is not None else ""
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
    out = [table(("ACCOUNT", "OWNER"), [(o.account, _owner_text(o)) for o in owners])]
    if installation is not None:
        out.append(f"installation {installation.label}")
        for account, other, cid, symbol in installation.alarms:
            out.append(
                f"ALARM {account}: orders of installation {other:06d} (another database), "
                f"e.g. {cid} on {symbol}: entries stopped until "
                f"`position-supervisor confirm-installation --account {account}`"
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
                timestamp(ev.at),
                "-" if ev.position_id is None else str(ev.position_id),
                ev.kind,
                f"{before} -> {after}",
                cause,
                detail,
            )
        )
    out.append("journal:")
    out.append(
        table(("TIME", "POS", "EVENT", "STATUS", "CAUSE", "DETAIL"), rows) if rows else "(empty)"
    )
    srows = [
        (
            timestamp(r.at),
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
        table(("TIME", "SIGNAL", "SOURCE", "OUTCOME", "REASON", "POS"), srows)
        if srows
        else "(empty)"
    )
    return "\n".join(out)
