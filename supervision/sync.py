"""The periodic exchange sync (S3): what the exchange shows, told to each symbol's actor.

:func:`observations` is pure: it turns one account view into one
:class:`~actors.messages.SyncObservation` per symbol that either has an exchange position or
an actor here (so that a position we hold which the exchange no longer has is closed with
``closed_on_exchange``, and one the exchange has that nobody opened is adopted).

:class:`SyncService` runs it every ``interval_s`` per account on its own thread, and at once
when an actor or a feed asks (``request``). Fetch errors are logged and counted; the next
round tries again. It never touches actor state itself: it only sends messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from actors.messages import Message, SyncObservation
from actors.model import Key
from actors.ports import AccountView, ExchangePort
from actors.state import parse_client_id

__all__ = ["SyncService", "observations"]

log = logging.getLogger(__name__)


def observations(view: AccountView, known: Iterable[Key]) -> list[SyncObservation]:
    """One observation per symbol with an exchange position, a local actor, or a resting
    order of ours (a leftover with no actor left to cancel it, I9)."""
    symbols = set(view.positions)
    symbols.update(k.symbol for k in known if k.account == view.account)
    symbols.update(
        sym
        for sym, orders in view.open_orders.items()
        if any(parse_client_id(o.client_id) is not None for o in orders)
    )
    return [
        SyncObservation(
            Key(view.account, sym),
            view.positions.get(sym),
            view.open_orders.get(sym, ()),
            view.observed_at,
        )
        for sym in sorted(symbols)
    ]


class SyncService:
    """Periodic sync of several accounts. ``start``/``stop``/``request`` are thread-safe."""

    def __init__(
        self,
        exchanges: Mapping[str, ExchangePort],
        tell: Callable[[Message], object],
        known_keys: Callable[[], Iterable[Key]],
        interval_s: float = 5.0,
        on_round: Callable[[str, int, float, bool], None] | None = None,
        clock: Callable[[], float] = time.time,
        active: Callable[[str], bool] | None = None,
    ) -> None:
        self._exchanges = dict(exchanges)
        # I7: an account this process does not own (standby, fenced) is not synced.
        self._active = active
        self._tell = tell
        self._known = known_keys
        self.interval_s = interval_s
        self._on_round = on_round
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._requested: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.rounds = 0

    def request(self, account: str, reason: str = "") -> None:
        """Ask for a sync of ``account`` as soon as possible (called from any thread)."""
        with self._lock:
            self._requested.add(account)
        self._wake.set()

    def sync_once(self, account: str) -> int:
        """Fetch one account and tell every actor; returns observations sent (-1 on error,
        0 without a fetch for an account that is not active here)."""
        if self._active is not None and not self._active(account):
            return 0
        ex = self._exchanges[account]
        t0 = time.perf_counter()
        try:
            view = ex.fetch_account(account)
        except Exception as exc:
            log.error("sync of %s failed: %r", account, exc)
            if self._on_round:
                self._on_round(account, -1, time.perf_counter() - t0, False)
            return -1
        obs = observations(view, self._known())
        for o in obs:
            self._tell(o)
        self.rounds += 1
        if self._on_round:
            self._on_round(account, len(obs), time.perf_counter() - t0, True)
        return len(obs)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        next_due = {a: 0.0 for a in self._exchanges}
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                due = set(self._requested)
                self._requested.clear()
            due.update(a for a, t in next_due.items() if t <= now)
            for account in sorted(due):
                if self._stop.is_set():
                    return
                self.sync_once(account)
                next_due[account] = time.monotonic() + self.interval_s
            wait = max(0.0, min(next_due.values()) - time.monotonic())
            self._wake.wait(wait)
            self._wake.clear()
