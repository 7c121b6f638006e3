"""Where the feeds deliver: the supervisor (or the app's intake), and the sync trigger.

:class:`FeedSink` is structural: :class:`supervision.supervisor.Supervisor` and
:class:`supervision.intake.Intake` both satisfy it. Both methods are called on the feed's
thread, must not block, and return False when the message was refused (the sink logs and
counts its own refusals; the feed counts them too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from actors.messages import MarkPriceTick, Message

__all__ = ["FeedSink", "SyncRequest"]


class FeedSink(Protocol):
    def tell(self, msg: Message) -> bool: ...

    def tell_tick(self, tick: MarkPriceTick) -> bool: ...


SyncRequest = Callable[[str, str], object]
"""``request_sync(account, reason)``, e.g. :meth:`supervision.sync.SyncService.request`."""
