"""The adapter's per-thread ccxt clients follow the threads that call it (issue 14, item 1):
a client of a thread that ended is closed and forgotten when the next thread makes its own,
so threads that come and go over weeks do not pile up clients (and their HTTP sessions)."""

from __future__ import annotations

import threading

import pytest

from actors.messages import CallResult
from infra.exchange import CcxtExchange
from tests.exchange.conftest import KEY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_clients_of_ended_threads_are_dropped(exchange: CcxtExchange) -> None:
    results: list[CallResult] = []

    def call() -> None:
        results.append(exchange.fetch_market(KEY).result)

    for _ in range(5):  # 50 threads in all, each with a client of its own while it lives
        threads = [threading.Thread(target=call, name="bounded-client") for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert results == [CallResult.FOUND] * 50
    last = threading.Thread(target=call, name="bounded-client-last")
    last.start()
    last.join(30)
    assert results[-1] is CallResult.FOUND
    # Only the last thread's client is left (and goes when another thread makes one).
    assert exchange.pool.client_count == 1
