"""Position ids for new positions, fetched from the store in blocks.

Who calls: the supervisor builds one :class:`IdPool` and hands it to every actor
(``ActorDeps.ids``); an actor without one builds a small pool of its own.
"""

from __future__ import annotations

from collections import deque

from actors.ports import Store

__all__ = ["IdPool"]


class IdPool:
    """Position ids fetched from the store in blocks, shared by every actor of a supervisor,
    so that the first signal of a symbol does not wait for a database round trip of its own.

    Called on actor threads, without a lock: taking an id is one atomic ``deque.popleft``;
    an actor that finds the pool empty fetches a block (``Store.allocate_ids``) and adds it.
    Two actors refilling at once both add a block: no id is lost or given twice, the ids are
    merely used out of order. Raises what ``allocate_ids`` raises (``StoreUnavailable``):
    the actor then refuses the signal (no new position without an id).
    """

    def __init__(self, store: Store, block: int = 64) -> None:
        if block < 1:
            raise ValueError("block must be >= 1")
        self._store = store
        self._block = block
        self._ids: deque[int] = deque()

    def __call__(self) -> int:
        while True:
            try:
                return self._ids.popleft()
            except IndexError:
                self._ids.extend(self._store.allocate_ids(self._block))
