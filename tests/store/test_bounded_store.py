"""The store's memory of written orders follows the open positions (issue 14, item 1): one
entry per non-terminal position this store wrote, dropped when the position ends."""

from __future__ import annotations

import pytest

from actors.messages import CloseRequest
from actors.model import CloseReason, Key, Status
from actors.state import Policy, Reentry
from infra.store import PostgresStore
from testkit.world import ACCOUNT, World, signal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SYMBOLS = [f"W{i:02d}USDT" for i in range(30)]


def test_written_orders_are_forgotten_when_positions_end(store: PostgresStore) -> None:
    with World(
        prices=dict.fromkeys(SYMBOLS, 100.0),
        policy=Policy(reentry=Reentry.ALLOW),
        store=store,  # type: ignore[arg-type]
    ) as w:
        assert len(store._written) == 0
        for _ in range(2):
            w.tell(*(signal(s, stop=90.0) for s in SYMBOLS))
            w.settle()
            opened = store.open_positions(ACCOUNT)
            assert len(opened) == len(SYMBOLS)
            assert all(p.status is Status.ACTIVE for p in opened)
            assert len(store._written) == len(SYMBOLS)
            w.tell(*(CloseRequest(Key(ACCOUNT, s), CloseReason.MANUAL, "op") for s in SYMBOLS))
            w.settle()
            assert not store.open_positions(ACCOUNT)
            assert len(store._written) == 0
