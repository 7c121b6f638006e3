"""One retry delay rule: exponential from a minimum, capped, with multiplicative jitter.

:class:`Backoff` is the only place the formula lives. Its users:

* the feeds' connection loop (:class:`infra.feeds.ws_client.ReconnectingWebSocket`): the
  delay before each reconnect, the attempt counter reset once a connection stayed up
  ``stable_after_s``;
* the restart policy of crashed actors (:meth:`supervision.restart.RestartPolicy.backoff`):
  the delay before a repeated restart (its window, not ``stable_after_s``, resets it).

Pure and immutable: any thread may call :meth:`Backoff.delay`; the caller supplies the random
number, so a seeded generator (or a fixed value in a test) makes the delays reproducible.
Construction raises ``ValueError`` for a nonsensical range; :meth:`Backoff.delay` never raises.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]

_MAX_DOUBLINGS = 60
"""The exponent's cap: ``2**60`` exceeds any ratio of cap to minimum, and stays a float."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays ``min(max_s, min_s·2ⁿ)·(1 + U(0,1)·jitter)`` for attempt ``n``.

    ``n`` = 0 is the first delay. A negative ``n`` halves ``min_s`` per step below 0 (the
    restart policy asks for ``n = -1`` when a quarantined key crashes after a quiet window).
    ``min_s`` = 0 makes every delay 0 (a restart policy may ask for immediate restarts; the
    feeds refuse it, see :class:`~infra.feeds.ws_client.ReconnectingWebSocket`).
    ``stable_after_s``: how long a connection must stay up before the next attempt counts
    from ``n = 0`` again (used by the feeds only).
    """

    min_s: float = 0.1
    max_s: float = 30.0
    jitter: float = 0.2
    stable_after_s: float = 10.0

    def __post_init__(self) -> None:
        if not (0 <= self.min_s <= self.max_s) or self.jitter < 0 or self.stable_after_s < 0:
            raise ValueError("need 0 <= min_s <= max_s, jitter >= 0, stable_after_s >= 0")

    def delay(self, attempt: int, rand: float) -> float:
        """The delay before attempt ``attempt`` (0-based); ``rand`` in [0, 1)."""
        base = min(self.max_s, self.min_s * 2.0 ** min(attempt, _MAX_DOUBLINGS))
        return base * (1.0 + rand * self.jitter)
