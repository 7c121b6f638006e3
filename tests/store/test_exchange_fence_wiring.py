"""The composition root fences each account's exchange adapter with that account's lease
(I7): :func:`supervision.wiring.wire_ownership` hands every adapter the keeper's validity
of *its own* account, which the adapter asks as it stamps each place and cancel
(tests/exchange/test_lease_fence.py shows what it does with the answer)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import cast

from supervision.app import App
from supervision.wiring import Infra, wire_ownership
from testkit.store import InMemoryStore
from testkit.waiting import poll
from tests.process.app_fixture import app_config


class FencedAdapter:
    """Stands in for an exchange adapter: keeps the lease it is fenced with."""

    def __init__(self) -> None:
        self.lease: Callable[[], float | None] | None = None

    def fence_with(self, seconds_left: Callable[[], float | None]) -> None:
        self.lease = seconds_left


class SupervisorStub:
    """What the keeper tells the supervisor, ignored here."""

    def set_entries_open(self, account: str, is_open: bool, reason: str, hold: bool) -> None:
        pass

    def set_adoption(self, account: str, allowed: bool) -> None:
        pass

    def deactivate(self, account: str, reason: str) -> Callable[[], bool]:
        return lambda: True


class AppStub:
    """What wire_ownership reads of the app."""

    def __init__(self) -> None:
        self.config = app_config(ownership={"lease_s": 3.0, "renew_s": 0.5, "fence_margin_s": 1.0})
        self.supervisor = SupervisorStub()
        self.sync = None
        self.activated: list[str] = []

    def activate(self, account: str) -> None:
        self.activated.append(account)


def test_each_adapter_is_fenced_with_its_own_accounts_lease(pg_dsn: str) -> None:
    adapter = FencedAdapter()
    app = AppStub()
    with contextlib.ExitStack() as resources:
        infra = Infra(InMemoryStore(), {"main": adapter}, pg_dsn, resources)  # type: ignore[dict-item]
        own = wire_ownership(cast(App, app), infra)
        lease = adapter.lease
        assert lease is not None
        assert lease() is None  # nothing held before the keeper runs: nothing may leave
        own.start()
        try:
            poll(lambda: app.activated == ["main"], 10, "the account taken")
            left = lease()
            assert left is not None and 0 < left <= 3.0 - 1.0
        finally:
            own.stop()
    assert lease() is None  # released at stop
