"""The live view's page: one read-only HTML document rendered on the server, reloading
itself (:func:`render_page`).

The page has no script: a ``<meta http-equiv="refresh">`` reloads it every ``refresh_s``
seconds. Every text that comes from outside (symbols, sources, signal ids, reasons, notes,
journal details) is escaped (:func:`html.escape`), so a hostile name cannot inject markup; the
control server also sends a Content-Security-Policy that allows no script at all.

Pure; called on the control server's worker threads.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence

from supervision.live_view._view import LiveView
from supervision.presentation import age_text, number_text

__all__ = ["render_page"]


def _e(x: object) -> str:
    """Escaped text of ``x`` (``-`` for None)."""
    return "-" if x is None else html.escape(str(x), quote=True)


def _ts(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(t))


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em;color:#1b1b1b;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.4em 0 .4em}
.meta{color:#555}table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:.25em .6em;border-bottom:1px solid #e2e2e2;text-align:left;white-space:nowrap}
th{background:#f0f0f0;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}
.warn{color:#8a5a00;font-weight:600}.empty{color:#777;font-style:italic}
.err{color:#b3261e}td.detail{white-space:normal;color:#444;font-size:.92em}
ul.checks{list-style:none;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:.4em}
li.check{padding:.15em .6em;border-radius:1em;background:#fff;border:1px solid #ccc}
li.check.ok{border-color:#137333}li.check.bad{border-color:#b3261e;background:#fdecea}
"""


def _table(
    cls: str, header: Sequence[str], rows: Sequence[str], empty: str, error: str | None
) -> str:
    if error is not None:
        return f'<p class="err">unavailable: {_e(error)}</p>'
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return (
        f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _position_rows(view: LiveView) -> list[str]:
    out = []
    for p in view.positions:
        if p.stop_resting:
            stop_state = '<span class="ok">resting</span>'
        elif p.stop_client_id is None:
            stop_state = '<span class="warn">no stop yet</span>'
        else:
            stop_state = '<span class="bad">not confirmed</span>'
        pnl = "-" if p.upnl is None else f"{p.upnl:+.2f}"
        pnl_cls = "" if p.upnl is None else (" ok" if p.upnl >= 0 else " bad")
        out.append(
            f'<tr class="position" data-key="{_e(p.key)}" data-id="{p.id}">'
            f"<td>{_e(p.key.account)}</td><td>{_e(p.key.symbol)}</td><td>{p.id}</td>"
            f'<td class="status">{_e(p.status)}</td><td>{_e(p.side)}</td>'
            f'<td class="n size">{number_text(p.size)}</td>'
            f'<td class="n entry">{number_text(p.entry)}</td>'
            f'<td class="n stop">{number_text(p.stop)}</td>'
            f'<td class="stop-state" data-resting="{"yes" if p.stop_resting else "no"}">'
            f"{stop_state}</td>"
            f'<td class="n mark">{number_text(p.mark)}</td>'
            f'<td class="n upnl{pnl_cls}">{_e(pnl)}</td>'
            f'<td class="n age">{age_text(p.age_s)}</td><td>{_e(p.source)}</td></tr>'
        )
    return out


def _control_rows(view: LiveView) -> list[str]:
    out = []
    for c in view.controls:
        what = []
        if c.paused:
            note = f" ({_e(c.paused_note)})" if c.paused_note else ""
            what.append(f'<span class="warn">paused</span> since {_ts(c.paused_at)}{note}')
        if c.quarantined:
            note = f" ({_e(c.quarantined_note)})" if c.quarantined_note else ""
            what.append(f'<span class="bad">quarantined</span> since {_ts(c.quarantined_at)}{note}')
        out.append(
            f'<tr class="control" data-key="{_e(c.key)}"><td>{_e(c.key.account)}</td>'
            f'<td>{_e(c.key.symbol)}</td><td class="detail">{"; ".join(what)}</td></tr>'
        )
    return out


def _signal_rows(view: LiveView) -> list[str]:
    out = []
    for s in view.signals:
        cls = "ok" if s.outcome.value == "accepted" else ""
        out.append(
            f'<tr class="signal"><td>{_ts(s.at)}</td><td>{_e(s.key.account)}</td>'
            f"<td>{_e(s.key.symbol)}</td><td>{_e(s.signal_id)}</td><td>{_e(s.source)}</td>"
            f'<td class="{cls}">{_e(s.outcome.value)}</td><td>{_e(s.reason or "-")}</td>'
            f"<td>{_e(s.position_id)}</td></tr>"
        )
    return out


def _journal_rows(view: LiveView) -> list[str]:
    return [
        f'<tr class="event"><td>{_ts(j.at)}</td><td>{_e(j.key)}</td><td>{_e(j.position_id)}</td>'
        f"<td>{_e(j.kind)}</td><td>{_e(j.transition)}</td><td>{_e(j.cause)}</td>"
        f'<td class="detail">{_e(j.detail)}</td></tr>'
        for j in view.journal
    ]


def _health(view: LiveView) -> str:
    """Every check as a chip: its name (and why it is down)."""
    if not view.health:
        return '<p class="empty">no checks</p>'
    chips = [
        f'<li class="check ok" data-check="{_e(name)}">{_e(name)}</li>'
        if why is None
        else f'<li class="check bad" data-check="{_e(name)}">{_e(name)}: {_e(why)}</li>'
        for name, why in view.health
    ]
    return f'<ul class="checks">{"".join(chips)}</ul>'


def render_page(view: LiveView) -> str:
    """The page (a complete HTML document). Pure; every outside text escaped."""
    refresh = max(1, round(view.refresh_s))
    down = [name for name, why in view.health if why is not None]
    overall = (
        '<span class="ok">ready</span>'
        if not down
        else f'<span class="bad">not ready: {_e(", ".join(down))}</span>'
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(view.generated_at))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{refresh}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>position-supervisor</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>position-supervisor</h1>",
        f'<p class="meta">accounts {_e(", ".join(view.accounts))} &middot; {overall} &middot; '
        f'<span id="generated" data-at="{view.generated_at:.3f}">{_e(stamp)}</span> &middot; '
        f"reloads every {refresh}s</p>",
        f"<h2>Open positions ({len(view.positions)})</h2>",
        _table(
            "positions",
            (
                "account",
                "symbol",
                "id",
                "status",
                "side",
                "size",
                "entry",
                "stop",
                "stop on exchange",
                "mark",
                "uPnL",
                "age",
                "source",
            ),
            _position_rows(view),
            "no open position",
            None,
        ),
        "<h2>Paused and quarantined symbols</h2>",
        _table(
            "controls",
            ("account", "symbol", "state"),
            _control_rows(view),
            "none: every symbol takes entries",
            view.controls_error,
        ),
        "<h2>Upstreams and checks</h2>",
        _health(view),
        "<h2>Latest signals</h2>",
        _table(
            "signals",
            ("time", "account", "symbol", "signal", "source", "outcome", "reason", "position"),
            _signal_rows(view),
            "no signal yet",
            view.signals_error,
        ),
        "<h2>Latest journal events</h2>",
        _table(
            "journal",
            ("time", "symbol", "position", "event", "status", "cause", "detail"),
            _journal_rows(view),
            "no event yet",
            view.journal_error,
        ),
        "</body></html>",
    ]
    return "\n".join(parts)
