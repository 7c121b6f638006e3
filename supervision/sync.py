"""The periodic exchange sync (S3): what the exchange shows, told to each symbol's actor.

:func:`observations` is pure: it turns one account view into one
:class:`~actors.messages.SyncObservation` per symbol that has an exchange position, an open
order of ours (a client order id of this supervisor) or an actor here (so that a position we
hold which the exchange no longer has is closed with ``closed_on_exchange``, one the exchange
has that nobody opened is adopted, and an order of ours resting on a symbol whose actor
passivated is still swept: the observation starts the actor again).

An observation with no position and no order of ours ("nothing here") keeps no actor alive:
the actor does not count it as activity, so an idle actor passivates on time.

:class:`SyncService` runs it every ``interval_s`` per account on its own thread, and at once
when an actor or a feed asks (``request``). Fetch errors are counted and the next round
tries again; they are logged by how long they last: a failed round is a WARNING (it is
retried), one that keeps failing — ``ERROR_AFTER_ROUNDS`` rounds in a row or
``ERROR_AFTER_S`` seconds without a successful round — an ERROR (at most one line per
``ERROR_EVERY_S`` seconds per account, the rest at DEBUG), and the first success after
failures an INFO line saying how long it failed. It never touches actor state itself: it
only sends messages.
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

ERROR_AFTER_ROUNDS = 3
ERROR_AFTER_S = 30.0
ERROR_EVERY_S = 60.0


def observations(view: AccountView, known: Iterable[Key]) -> list[SyncObservation]:
    """One observation per symbol with an exchange position, a local actor, or a resting
    order of ours (a leftover with no actor left to cancel it, I9)."""
    symbols = set(view.positions)
    symbols.update(
        sym
        for sym, orders in view.open_orders.items()
        if any(parse_client_id(o.client_id) is not None for o in orders)
    )
    symbols.update(k.symbol for k in known if k.account == view.account)
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
        # account -> (failed rounds in a row, monotonic time of the first, of the last ERROR)
        self._failing: dict[str, tuple[int, float, float | None]] = {}

    @property
    def running(self) -> bool:
        """True while the sync thread is alive (the liveness check reads it)."""
        return self._thread is not None and self._thread.is_alive()

    def request(self, account: str, reason: str = "") -> None:
        """Ask for a sync of ``account`` as soon as possible (called from any thread).

        An account this service does not sync is ignored (logged): the set of requests holds
        configured accounts only, and is emptied by each round."""
        if account not in self._exchanges:
            log.warning("sync requested for unknown account %r (%s): ignored", account, reason)
            return
        with self._lock:
            self._requested.add(account)
        self._wake.set()

    def sizes(self) -> dict[str, int]:
        """Size of the per-account structure: ``sync_requested`` (accounts waiting)."""
        with self._lock:
            return {"sync_requested": len(self._requested)}

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
            self._log_failure(account, exc)
            if self._on_round:
                self._on_round(account, -1, time.perf_counter() - t0, False)
            return -1
        failed = self._failing.pop(account, None)
        if failed is not None:
            log.info(
                "sync of %s recovered after %d failed rounds (%.0fs)",
                account,
                failed[0],
                time.monotonic() - failed[1],
            )
        obs = observations(view, self._known())
        for o in obs:
            self._tell(o)
        self.rounds += 1
        if self._on_round:
            self._on_round(account, len(obs), time.perf_counter() - t0, True)
        return len(obs)

    def _log_failure(self, account: str, exc: Exception) -> None:
        """WARNING while a failure may be passing, ERROR once it keeps failing (throttled)."""
        now = time.monotonic()
        n, since, last_error = self._failing.get(account, (0, now, None))
        n += 1
        lasting = now - since
        if n < ERROR_AFTER_ROUNDS and lasting < ERROR_AFTER_S:
            log.warning("sync of %s failed (will retry): %r", account, exc)
        elif last_error is None or now - last_error >= ERROR_EVERY_S:
            last_error = now
            log.error(
                "sync of %s keeps failing: %d rounds in a row over %.0fs; last error: %r",
                account,
                n,
                lasting,
                exc,
            )
        else:
            log.debug("sync of %s failed again (%d in a row): %r", account, n, exc)
        self._failing[account] = (n, since, last_error)

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
