"""Every reason a signal can be refused for, and whether sending it again may succeed (I11).

The one list of refusal reasons: the feed's frame checks, the intake, the supervisor's
gates and the position actor all refuse with a name from here (or from one of the
:data:`FAMILIES`), the signal feed's answer frame carries ``"retry": retry_allowed(reason)``,
and the README's table is checked against this module by a test.

*Transient* (``retry`` true): nothing about the signal itself was wrong; the same id sent
again later may be accepted (the store keeps such refusals out of the once-per-id rule).
*Final* (``retry`` false): the id is decided for good; sending it again is answered with
the recorded outcome and ``"replay": true``.

Pure data; no I/O. Any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

__all__ = [
    "FAMILIES",
    "REASONS",
    "Reason",
    "known",
    "retry_allowed",
]


class Reason(NamedTuple):
    """A refusal reason: the outcome it comes with, whether a re-send may succeed, what it
    means (the README's words)."""

    outcome: str
    retry: bool
    meaning: str


def _r(outcome: str, retry: bool, meaning: str) -> Reason:
    return Reason(outcome, retry, meaning)


_REJ = "rejected"

REASONS: Mapping[str, Reason] = MappingProxyType(
    {
        # -- the frame (signal feed)
        "binary_frame": _r(_REJ, False, "a binary frame; signals are text"),
        "oversized": _r(_REJ, False, "a message over 16 KiB (the sum of its fragments)"),
        "invalid_utf8": _r(_REJ, False, "not UTF-8"),
        "malformed_json": _r(_REJ, False, "not JSON"),
        "not_an_object": _r(_REJ, False, "JSON, but not an object"),
        "duplicate_field": _r(_REJ, False, "a key given twice"),
        "unknown_field": _r(_REJ, False, "a key the schema does not have"),
        "created_in_future": _r(_REJ, False, "`created_at` more than 5 s ahead"),
        "rate_limited": _r(_REJ, True, "over the feed's rate (50 signals/s, bursts of 100)"),
        "sink_error": _r(_REJ, True, "the supervisor could not take it (an internal error)"),
        "intake_refused": _r(_REJ, True, "the supervisor did not take it (shutting down)"),
        # -- the intake and the supervisor
        "unknown_account": _r(_REJ, False, "`account` is not configured"),
        "symbol_not_allowed": _r(_REJ, False, "`symbol` is not in the account's allow-list"),
        "max_open_positions": _r(_REJ, True, "the account holds `max_open_positions` already"),
        "not_owner": _r(_REJ, True, "another process manages the account"),
        "ownership_lock_lost": _r(
            _REJ,
            True,
            "this process lost the account (its lease could not be renewed in time, or "
            "another process took it over)",
        ),
        "foreign_installation": _r(
            _REJ,
            True,
            "orders of another installation (another database) were seen on the account; "
            "entries resume when an operator confirms",
        ),
        # -- the position actor
        "expired": _r(_REJ, False, "`expires_at` has passed"),
        "too_old": _r(_REJ, False, "`created_at` is older than `max_signal_age_s`"),
        "quarantined": _r(_REJ, True, "the symbol is quarantined after repeated crashes"),
        "paused": _r(_REJ, True, "an operator paused new entries on the symbol (`pause`)"),
        "position_open": _r("duplicate", False, "a position on the symbol is open"),
        "signal_replayed": _r("duplicate", False, "the id was decided before"),
        "cooldown": _r(
            "cooldown", False, "a position on the symbol closed less than `cooldown_s` ago"
        ),
        "never_again": _r(_REJ, False, "`reentry = never` and the symbol was bought before"),
        "max_notional": _r(_REJ, False, "size x mark price over `max_notional`"),
        "no_mark_price": _r(
            _REJ,
            True,
            "no mark price younger than `max_mark_age_s` could be had within `mark_wait_s`",
        ),
        "previous_orders_pending": _r(
            _REJ, True, "an earlier position's stop or take-profit is not confirmed cancelled yet"
        ),
        "busy": _r(_REJ, True, "too many signals wait for the symbol's mark price"),
        "store_unavailable": _r(_REJ, True, "the database did not answer within its bound"),
        "restarting": _r(_REJ, True, "the symbol's actor is restarting after a crash"),
    }
)
"""Every refusal reason by name."""

FAMILIES: Mapping[str, Reason] = MappingProxyType(
    {
        "missing:": _r(_REJ, False, "a required field is missing (`missing:<field>`)"),
        "type:": _r(_REJ, False, "a field of the wrong JSON type (`type:<field>`)"),
        "invalid:": _r(_REJ, False, "a value the rules refuse (`invalid:<what>`, see below)"),
    }
)
"""Reasons named ``<prefix><field>``."""


def _lookup(reason: str) -> Reason | None:
    found = REASONS.get(reason)
    if found is not None:
        return found
    for prefix, family in FAMILIES.items():
        if reason.startswith(prefix) and len(reason) > len(prefix):
            return family
    return None


def known(reason: str) -> bool:
    """True for a reason of this module (a name of :data:`REASONS` or of a family)."""
    return _lookup(reason) is not None


def retry_allowed(reason: str) -> bool:
    """May the same signal id succeed if sent again later? False for an unknown reason (a
    refusal nobody declared is not promised to pass)."""
    found = _lookup(reason)
    return found is not None and found.retry
