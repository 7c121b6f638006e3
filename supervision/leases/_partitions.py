"""The history's monthly partitions, made ahead by the lease keeper (:class:`PartitionUpkeep`):
a run of months never writes into the default partition.

Called on the keeper's thread after each heartbeat that reached the database; hourly. A
failure is logged and retried on the next round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from actors.ports import StoreError
from infra.store.ownership import LeaseStore

__all__ = ["PARTITIONS_EVERY_S", "PartitionUpkeep"]

log = logging.getLogger("supervision.leases")

PARTITIONS_EVERY_S = 3600.0
"""How often the keeper makes the history's monthly partitions ahead."""


class PartitionUpkeep:
    """Makes the partitions now if they are due (the first call always is)."""

    def __init__(self, store: LeaseStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._due: float | None = None  # the next ensure_partitions (the keeper's clock)

    def run_if_due(self) -> None:
        """:meth:`LeaseStore.ensure_partitions` when an hour passed since the last success."""
        now = self._clock()
        if self._due is not None and now < self._due:
            return
        try:
            self._store.ensure_partitions()
            self._due = now + PARTITIONS_EVERY_S
        except StoreError as exc:
            log.error("lease keeper: could not make the history's partitions: %s", exc)
