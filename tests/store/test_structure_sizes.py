"""The composition root reports the per-key memories of the real adapters to the supervisor's
``structure_sizes`` (what the soak and the bounded-structure checks read): each account's
per-thread ccxt clients and the store's memory of the orders it wrote."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from infra.exchange import CcxtExchange, Credentials, VenueConfig
from infra.store.postgres import PostgresStore
from supervision.wiring import Infra, watch_sizes
from testkit.world import World
from tests.store.builders import entry_commit, new_position

pytestmark = pytest.mark.timeout(60)


def test_the_adapters_clients_and_the_stores_written_orders_are_reported(
    store: PostgresStore,
) -> None:
    ex = CcxtExchange(
        "acc1",
        VenueConfig(base_url="http://127.0.0.1:1", api_credentials=Credentials("k", "s")),
        environ={},
    )
    w = World()
    try:
        intake = cast(Any, SimpleNamespace(admitted=lambda: 0))
        sync = cast(Any, SimpleNamespace(sizes=lambda: {"sync_requested": 0}))
        watch_sizes(w.sup, intake, sync, Infra(store=store, exchanges={"acc1": ex}))
        sizes = w.sup.structure_sizes()
        assert sizes["exchange_clients:acc1"] == ex.pool.client_count == 0
        assert sizes["store_written"] == 0
        store.commit(entry_commit(new_position(store.allocate_ids(1)[0])))
        assert w.sup.structure_sizes()["store_written"] == store.written_positions == 1
    finally:
        w.close()
        ex.close()
