"""``close``, ``pause``, ``resume``, ``unquarantine``: one call each to the running
process's control endpoint (:mod:`supervision.control`), which asks each symbol's actor.

Main thread; blocking for at most ``--timeout`` (+15 s for the HTTP call). Needs only the
control token (``PS_CONTROL_TOKEN``, ``control.token_env``) and ``control.address``, no
trading keys. Exit 0 done, 1 the endpoint cannot be reached or refused or a symbol's request
failed, 2 usage, 4 still pending when the timeout passed (each pending symbol is named).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from infra.config import Config
from supervision.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PENDING,
    UsageError,
    config_arg,
    load_for_reading,
    one_line,
    select_accounts,
)
from supervision.cli.render import table

__all__ = [
    "ControlError",
    "add_parsers",
    "call_control",
    "cmd_control",
    "control_url",
    "render_control",
]


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
    out = table(("SYMBOL", "OUTCOME", "WHAT HAPPENED"), rows)
    pending = doc.get("pending") or []
    if pending:
        out += (
            f"\nnot done within the timeout: {', '.join(pending)} (a queued request is still "
            "carried out; see `status`)"
        )
    return out


def cmd_control(args: argparse.Namespace) -> int:
    """``close``, ``pause``, ``resume``, ``unquarantine``: one call to the control endpoint."""
    cfg = load_for_reading(args)
    select_accounts(cfg, args.account)
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
        print(f"{args.command}: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(doc, indent=2) if args.json else render_control(doc))
    if not doc.get("ok", False):
        return EXIT_FAILURE
    return EXIT_OK if doc.get("done") else EXIT_PENDING


def add_parsers(sub: Any) -> None:
    """The ``close``, ``pause``, ``resume`` and ``unquarantine`` subcommands on ``sub``."""
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
