"""The store, timed: a :class:`~actors.ports.Store` wrapper that reports commit latency and
the database's health.

Built by :class:`supervision.app.App` around the store the wiring opened; every actor thread,
the sync and the intake call it (it is as thread-safe as the store it wraps and keeps one
string of state, replaced atomically). A store call that raises
:class:`~actors.ports.StoreUnavailable` marks the database down and re-raises; the next call
that succeeds marks it up. Metrics never raise (:class:`StoreMetrics`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from actors.messages import SyncObservation
from actors.model import Key
from actors.ports import Snapshot, Store, StoreUnavailable
from actors.state import Commit, Position, SignalRecord

__all__ = ["StoreMetrics", "TimedStore"]

_T = TypeVar("_T")


class StoreMetrics(Protocol):
    """What the timed store reports (:class:`~infra.metrics.PrometheusMetrics` has both).
    Cheap, thread-safe, never raise."""

    def db_commit(self, seconds: float) -> None:
        """One commit took ``seconds``."""
        ...

    def sync_discrepancy(self, account: str, kind: str) -> None:
        """A sync observation changed a position's status (``kind``: the journal event)."""
        ...


class TimedStore:
    """A :class:`~actors.ports.Store` wrapper: commit latency to metrics, database health.

    The database is "down" from a commit or load that raised ``StoreUnavailable`` until the
    next one that succeeds. Other attributes (inspection methods of the real store) pass
    through unchanged.
    """

    def __init__(self, inner: Store, metrics: StoreMetrics | None = None) -> None:
        self.inner = inner
        self._metrics = metrics
        self._down: str | None = None

    def load(self, key: Key) -> Snapshot:
        return self._watch(lambda: self.inner.load(key))

    def commit(self, commit: Commit) -> None:
        """Commit; counts latency, and every status change a sync observation caused as a
        sync discrepancy (``ps_sync_discrepancies_total{kind=<journal event kind>}``)."""
        t0 = time.perf_counter()
        self._watch(lambda: self.inner.commit(commit))
        m = self._metrics
        if m is not None:
            m.db_commit(time.perf_counter() - t0)
            if isinstance(commit.cause, SyncObservation):
                for ev in commit.events:
                    if ev.status_before is not ev.status_after:
                        m.sync_discrepancy(commit.key.account, ev.kind)

    def allocate_ids(self, n: int) -> Sequence[int]:
        return self._watch(lambda: self.inner.allocate_ids(n))

    def open_positions(self, account: str | None = None) -> list[Position]:
        return self._watch(lambda: self.inner.open_positions(account))

    def recorded_signal(self, account: str, signal_id: str) -> SignalRecord | None:
        return self._watch(lambda: self.inner.recorded_signal(account, signal_id))

    def health(self) -> str | None:
        """``None`` while the last store call succeeded, else why it failed."""
        return self._down

    def probe(self) -> None:
        """Ping the database when the store can (``ping()``); updates :meth:`health`."""
        ping = getattr(self.inner, "ping", None)
        if ping is None:
            return
        try:
            ping()
        except Exception as exc:
            self._down = f"unavailable: {exc}"
        else:
            self._down = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _watch(self, fn: Callable[[], _T]) -> _T:
        try:
            out = fn()
        except StoreUnavailable as exc:
            self._down = f"unavailable: {exc}"
            raise
        self._down = None
        return out
