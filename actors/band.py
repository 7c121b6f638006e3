"""The tick-band protocol, the actor's side: which mark prices may wait in the tick slot.

The feed conflates mark prices into one :class:`~actors.messages.TickSource` per symbol and
wakes the actor (a :class:`~actors.messages.TicksReady`) only for a price outside the band
the actor last published; a price inside it is *parked* and applied before the actor's next
message. Who calls: :class:`~actors.position_actor.PositionActor`, on its thread only. The
slot is learnt from the first wake-up. Nothing here raises but what the callbacks raise.
"""

from __future__ import annotations

from collections.abc import Callable

from actors.conflation import TickSlot
from actors.messages import MarkPriceTick, Message, TickSource, TicksReady
from actors.model import Key

__all__ = ["BAND_ROUNDS", "TickBand"]

#: How many times a new band may at once release a parked tick before the actor gives up
#: on a band until its next message (the price is still moving: every tick wakes it).
BAND_ROUNDS = 4


class TickBand:
    """One actor's tick slot and the band it publishes there."""

    __slots__ = ("_deliver", "_key", "slot")

    def __init__(self, key: Key, deliver: Callable[[Message], object]) -> None:
        self._key = key
        self._deliver = deliver  # the host's router: a wake-up reaches whoever owns the key
        self.slot: TickSource | None = None

    def wake(self, message: TicksReady) -> tuple[MarkPriceTick | None, float | None]:
        """Take the conflated tick of a wake-up (here, so that tick-to-decision latency is
        measured): the tick (None: taken already) and, when the slot woke the actor for a
        price leaving the band, when the frame that carried it arrived."""
        slot = self.slot = message.slot
        tick = slot.take()
        if tick is None:
            return None, None
        woke = isinstance(slot, TickSlot) and slot.woken
        return tick, (tick.received_at or None) if woke else None

    def take_parked(self) -> MarkPriceTick | None:
        """A tick parked in the band, to apply before the next message (a fresh last price)."""
        return self.slot.take_parked() if self.slot is not None else None

    def publish(
        self,
        band: Callable[[], tuple[float, float] | None],
        dispatch: Callable[[MarkPriceTick], None],
        halted: Callable[[], bool],
    ) -> None:
        """Tell the slot which mark prices cannot change anything durable now (``band()``,
        asked afresh after each tick), so the feed parks them instead of waking the actor;
        ``dispatch`` a parked tick that the new band no longer covers. ``halted()``: the
        actor restarts or retires, so no band (every tick wakes whoever owns the key)."""
        slot = self.slot
        if slot is None:
            return
        for _ in range(BAND_ROUNDS):
            if halted():
                self.release()
                return
            if not slot.set_band(band()):
                return
            tick = slot.take()
            if tick is None:
                return
            dispatch(tick)
        self.release()  # still moving: wake on every tick until the next message

    def release(self) -> None:
        """No band: every tick wakes the actor. A tick parked until now is not left behind
        (it would wait for the next wake-up that a non-empty slot never sends): it comes
        back through the host's router."""
        wake_up = self.hand_back()
        if wake_up is not None:
            self._deliver(wake_up)

    def hand_back(self) -> TicksReady | None:
        """Drop the band; the wake-up owed for a tick parked under it, if any."""
        if self.slot is not None and self.slot.set_band(None):
            return TicksReady(self._key, self.slot)
        return None
