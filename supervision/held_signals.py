"""The signals held for accounts that wait for their lease here (:class:`HeldSignals`).

While an account waits for its lease (standby, fenced, taking over), its signals are not
answered here (its owner answers them): the supervisor holds them, for at most ``hold_s``
seconds and at most :data:`MAX_HELD_SIGNALS` per account (the oldest go first), and offers
them to the actors when entries open here (:meth:`HeldSignals.release`).

Called by :class:`~supervision.supervisor.Supervisor` on any producer's thread (hold) and
on the lease keeper's (switching, release); each call is a few dict and deque operations
(CPython's GIL makes each atomic; a signal held while its account's batch is released is
offered with the next one or aged out). Never raises.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from actors.messages import OpenSignal

__all__ = ["MAX_HELD_SIGNALS", "HeldSignals"]

#: Signals held per account while it waits for its lease (the oldest are dropped beyond).
MAX_HELD_SIGNALS = 10_000


class HeldSignals:
    """Per account: whether its signals are held now, and the held ones with when."""

    def __init__(
        self,
        accounts: Iterable[str],
        hold_s: float,
        *,
        holding: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        accounts = list(accounts)
        self.hold_s = hold_s
        self._clock = clock
        self._holding: dict[str, bool] = dict.fromkeys(accounts, holding)
        self._held: dict[str, deque[tuple[float, OpenSignal]]] = {a: deque() for a in accounts}

    def set_holding(self, account: str, holding: bool) -> None:
        """Hold ``account``'s signals from now on (or stop holding them)."""
        self._holding[account] = holding

    def hold(self, sig: OpenSignal) -> bool:
        """Hold ``sig`` when its account's signals are held; False when they are not."""
        account = sig.key.account
        if not self._holding.get(account, False):
            return False
        held = self._held.setdefault(account, deque())
        now = self._clock()
        while held and (now - held[0][0] > self.hold_s or len(held) >= MAX_HELD_SIGNALS):
            held.popleft()
        held.append((now, sig))
        return True

    def release(self, account: str) -> list[OpenSignal]:
        """Take every signal held for ``account``: those not older than ``hold_s``, oldest
        first (the older ones are dropped)."""
        held = self._held.get(account)
        if not held:
            return []
        now = self._clock()
        batch = []
        while held:
            at, sig = held.popleft()
            if now - at <= self.hold_s:
                batch.append(sig)
        return batch

    def count(self, account: str) -> int:
        """Signals held for ``account`` now."""
        return len(self._held.get(account, ()))

    def total(self) -> int:
        """Signals held for every account now (the soak's structure sizes)."""
        return sum(len(h) for h in list(self._held.values()))
