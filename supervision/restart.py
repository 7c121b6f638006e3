"""Restart policy for crashed position actors (I6): OTP intensity plus Akka backoff.

* The first restart in a quiet period is immediate; the n-th repeat waits
  :class:`infra.backoff.Backoff` ``(min_backoff_s, max_backoff_s, jitter).delay(n - 1, random)``
  (exponential, capped, jittered: the feeds' reconnect rule).
* More than ``max_restarts`` crashes inside ``window_s`` quarantines the symbol: no new
  entries, protection stays. Quarantine is sticky until an operator clears it.
* The count resets after ``window_s`` without a crash.

Thread-safety: :meth:`RestartTracker.on_crash` is called from actor threads, one actor per
key, so a tracker per key is touched by one thread at a time; the registry of trackers is
guarded by the supervisor.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from actors.host import RestartDecision
from infra.backoff import Backoff
from infra.config import RestartConfig

__all__ = ["RestartPolicy", "RestartTracker"]


@dataclass(frozen=True, slots=True)
class RestartPolicy(RestartConfig):
    """The ``[restart]`` section's values (and defaults: :class:`~infra.config.RestartConfig`,
    written once) with the backoff formula."""

    def backoff(self, repeat: int, rnd: float) -> float:
        """Delay before the ``repeat``-th repeated restart (``repeat`` >= 1)."""
        return Backoff(self.min_backoff_s, self.max_backoff_s, self.jitter).delay(repeat - 1, rnd)


class RestartTracker:
    """Crash history of one key."""

    def __init__(self, policy: RestartPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng or random.Random()
        self._crashes: deque[float] = deque()
        self.total = 0
        self.quarantined = False

    def quiet(self, now: float) -> bool:
        """True when this tracker remembers nothing that counts: not quarantined and no crash
        within the window (the next crash would be treated as a first one anyway). The
        supervisor drops such trackers, so their number follows the crashing symbols."""
        p = self.policy
        return not self.quarantined and (not self._crashes or self._crashes[-1] <= now - p.window_s)

    def on_crash(self, now: float) -> RestartDecision:
        p = self.policy
        while self._crashes and self._crashes[0] <= now - p.window_s:
            self._crashes.popleft()
        self._crashes.append(now)
        self.total += 1
        n = len(self._crashes)
        if n > p.max_restarts:
            self.quarantined = True
        if self.quarantined:
            delay = p.max_backoff_s if n > p.max_restarts else p.backoff(n - 1, self._rng.random())
        else:
            delay = 0.0 if n == 1 else p.backoff(n - 1, self._rng.random())
        return RestartDecision(delay=delay, quarantine=self.quarantined)
