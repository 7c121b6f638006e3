"""The process's own health checks (``/livez``, ``/readyz``): the app's loop, threads,
actors, closes and each account's sync.

:class:`ProcessChecks` is built by :class:`~supervision.app.App` and registered on its
:class:`~infra.metrics.HealthChecks` by :meth:`App.start`; the checks run on the metrics
server's worker threads and only read (the app's attributes, the supervisor's reports). The
app's main loop records its heartbeat (:meth:`ProcessChecks.beat`) and each successful sync
(:meth:`ProcessChecks.synced`). A check returns ``None`` when fine, else why not; it never
raises on its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import pykka

from actors.position_actor import PositionActor

if TYPE_CHECKING:
    from supervision.app import App

__all__ = ["ACTOR_STALL_S", "LOOP_STALL_S", "ProcessChecks", "mailbox_depths"]

LOOP_STALL_S = 30.0
ACTOR_STALL_S = 120.0


def mailbox_depths() -> Iterable[int]:
    """The number of messages waiting in each position actor's mailbox."""
    for ref in pykka.ActorRegistry.get_by_class(PositionActor):
        with contextlib.suppress(Exception):
            yield ref.actor_inbox.qsize()  # type: ignore[attr-defined]


class ProcessChecks:
    """The checks of one :class:`~supervision.app.App` and the times they compare."""

    def __init__(self, app: App) -> None:
        self._app = app
        self.started_at = time.monotonic()
        self._heartbeat: float | None = None  # the last round of the app's wait() loop
        self._sync_ok: dict[str, float] = {}

    def beat(self) -> float:
        """The main loop went round now (returns ``time.monotonic()``)."""
        now = self._heartbeat = time.monotonic()
        return now

    def synced(self, account: str) -> None:
        """``account`` synced (or was taken) now."""
        self._sync_ok[account] = time.monotonic()

    def register_process(self) -> None:
        """The checks that need nothing built yet: startup, shutdown and the liveness ones."""
        app = self._app
        app.health.register("startup", lambda: None if app.ready.is_set() else "starting")
        app.health.register("shutdown", lambda: "stopping" if app.stopping.is_set() else None)
        app.health.register("housekeeping", self.housekeeping, live=True)
        app.health.register("threads", self.threads, live=True)
        app.health.register("actors", self.actors, live=True)

    def register_account(self, account: str) -> None:
        """``exchange:<account>``: no successful sync for too long (upstream: the exchange)."""
        self.synced(account)
        self._app.health.register(
            f"exchange:{account}", self.exchange(account), upstream="exchange"
        )

    # -- readiness

    def closes(self) -> str | None:
        """Not ready while a close keeps failing (the position cannot be flattened)."""
        sup = self._app.supervisor
        failing = sup.failing_closes() if sup is not None else []
        if not failing:
            return None
        return "closes refused again and again: " + ", ".join(sorted(map(str, failing)))

    def exchange(self, account: str) -> Callable[[], str | None]:
        limit = max(30.0, 3 * self._app.config.sync.interval_s)

        def check() -> str | None:
            if self._app.ownership is not None and not self._app.may_sync(account):
                return None  # not synced here: its owner's check
            age = time.monotonic() - self._sync_ok.get(account, self.started_at)
            return f"no successful sync for {age:.0f}s" if age > limit else None

        return check

    # -- liveness: the process itself can work

    def housekeeping(self) -> str | None:
        """The main thread's loop (:meth:`App.wait`) went round within ``LOOP_STALL_S``."""
        beat = self._heartbeat
        if beat is None or self._app.stopping.is_set():
            return None
        age = time.monotonic() - beat
        return f"main loop stalled for {age:.0f}s" if age > LOOP_STALL_S else None

    def threads(self) -> str | None:
        """The timer, sync and feed threads are alive (while running; not when stopping)."""
        app = self._app
        if not app.ready.is_set() or app.stopping.is_set():
            return None
        dead = []
        sup = app.supervisor
        timers = getattr(sup.timers, "_thread", None) if sup is not None else None
        if isinstance(timers, threading.Thread) and not timers.is_alive():
            dead.append("timers")
        if app.sync is not None and not app.sync.running:
            dead.append("sync")
        if app.ownership is not None and not app.ownership.running:
            dead.append("lease-keeper")
        for feed in app.feeds:
            if getattr(feed, "running", True) is False:
                dead.append(f"feed:{getattr(feed, 'name', type(feed).__name__)}")
        return "dead: " + ", ".join(dead) if dead else None

    def actors(self) -> str | None:
        """The actor system moves: when messages wait in actor mailboxes, some actor handled
        one within ``ACTOR_STALL_S``."""
        app = self._app
        sup = app.supervisor
        if sup is None or not app.ready.is_set() or app.stopping.is_set():
            return None
        waiting = sum(mailbox_depths())
        if waiting == 0:
            return None
        last = max((c.report.last_activity for c in sup.cells()), default=None)
        if last is None:
            return None
        idle = app.clock.now() - last
        if idle > ACTOR_STALL_S:
            return f"{waiting} messages waiting, no actor handled one for {idle:.0f}s"
        return None
