"""Failover trials (``bench.failover``), short variants: three supervisor processes under
supervisord on one PostgreSQL, six accounts on ``sim/``, and in turn kill -9 of an owner,
SIGTERM, a partition from the database, SIGSTOP past the lease, a database restart; then two
databases on one account. The counters are checked first: each sees the violation it exists
to catch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.model import Key, OrderKind
from actors.ports import OrderRequest
from bench.failover import SHORT, count, run_failover, run_two_databases
from infra.exchange import CcxtExchange, VenueConfig
from sim.exchange import SimExchange
from sim.symbols import make_symbols

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.serial]

LINE = re.compile(
    r"^failover: processes=3 accounts=6 lease_s=3 faults=5 takeovers=\d+"
    r" takeover_p50_s=[0-9.]+ takeover_p99_s=[0-9.]+ \(target<=5\)"
    r" expired_lease_orders=0 foreign_cancels=0 double_closes=0 double_entries=0"
    r" unprotected_over_bound=0$"
)


@pytest.fixture
def sim() -> Iterator[SimExchange]:
    keys = {"acc1": ["key-acc1-p1", "key-acc1-p2"]}
    with SimExchange(make_symbols(2), accounts=keys) as ex:
        yield ex


def _client(sim: SimExchange, key: str, options: dict[str, Any] | None = None) -> CcxtExchange:
    return CcxtExchange(
        "acc1",
        VenueConfig(
            base_url=sim.base_url,
            require_credentials=True,
            enable_rate_limit=False,
            extra_options=options or {},
        ),
        environ={"PS_ACC1_API_KEY": key, "PS_ACC1_API_SECRET": "s"},
    )


@pytest.mark.timeout(60)
def test_the_counters_see_what_they_exist_to_catch(sim: SimExchange) -> None:
    """Orders without a lease, a cancel of a newer owner's order, a position closed by two
    processes, an entry executed twice, a naked position: each is counted (a harness that
    counted nothing would pass any system)."""
    sym = sorted(sim.initial_prices)[0]
    key = Key("acc1", sym)
    price = sim.mark_price(sym)
    p1, p2 = _client(sim, "key-acc1-p1"), _client(sim, "key-acc1-p2")
    p1_late = _client(sim, "key-acc1-p1", {"timeDifference": 60_000})
    try:
        for cid in ("ps1000001e1", "ps1000001e2"):  # one position, its entry executed twice
            assert p1.place_order(OrderRequest(key, cid, OrderKind.ENTRY, "buy", 1)).result
        stop = OrderRequest(
            key, "ps1000001s1", OrderKind.STOP_LOSS, "sell", 0, price * 0.9, False, True
        )
        assert p2.place_order(stop).result.value == "accepted"  # p2 owns the account then
        assert p1.cancel_order(key, "ps1000001s1", True).result.value == "accepted"
        for prog, client in (("p1", p1), ("p2", p2)):  # both close it
            close = OrderRequest(key, f"ps1000001c{prog[-1]}", OrderKind.CLOSE, "sell", 1)
            assert client.place_order(close).result.value == "accepted", prog
        # p1 again, its request stamped 60 s before it arrives: refused for its timestamp
        # (-1021), never executed: counted apart, not as an order without a lease.
        late = OrderRequest(key, "ps1000001c9", OrderKind.CLOSE, "sell", 1)
        assert p1_late.place_order(late).reason == "clock_skew"
    finally:
        p1.close()
        p2.close()
        p1_late.close()
    log = sim.order_log() + sim.cancel_log()
    first, last = min(e.time for e in log), max(e.time for e in log)
    stop_at = next(e.time for e in sim.order_log() if e.client_id == "ps1000001s1")
    history: dict[str, list[dict[str, Any]]] = {
        "acc1": [
            # p1 owns epoch 1 until just before p2's stop, p2 owns epoch 2 from then on:
            # p1's cancel and close come after its lease ended.
            {"epoch": 1, "pid": 101, "acquired": first - 1, "end": stop_at - 0.0005},
            {"epoch": 2, "pid": 202, "acquired": stop_at - 0.0004, "end": last + 1},
        ]
    }
    pids = {"p1": [101], "p2": [202]}
    c = count(SHORT, sim, history, pids, [("acc1", sym, 99.0)])
    assert c.expired_lease_orders == 2, c.problems  # p1's cancel and close
    assert c.late_refused == 1
    assert c.foreign_cancels == 1 and "cancelled ps1000001s1 placed by p2" in " ".join(c.problems)
    assert c.double_closes == 1 and c.double_entries == 1 and c.unprotected == 1
    assert not c.ok
    # The same log with p1's lease lasting throughout: only the real double counts remain.
    history["acc1"][0]["end"] = last + 1
    c = count(SHORT, sim, history, pids, [])
    assert (c.expired_lease_orders, c.double_closes, c.double_entries) == (0, 1, 1)


@pytest.mark.timeout(150)
def test_short_failover_trial_holds_every_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = run_failover(SHORT, tmp_path)
    print(c.detail_line())
    print(c.line())
    assert c.faults == ["kill9", "sigterm", "db_partition", "sigstop", "db_restart"]
    assert c.ok, c.problems
    assert not c.problems, c.problems
    faults_with_takeovers = {fault for fault, _, _ in c.takeovers}
    assert faults_with_takeovers == {"kill9", "sigterm", "db_partition", "sigstop"}, c.takeovers
    assert c.orders >= 20 and c.cancels >= 3 and c.positions >= 5, c.detail_line()
    assert c.epochs >= 6 + len(c.takeovers), c.detail_line()
    assert LINE.match(c.line()), c.line()


@pytest.mark.timeout(90)
def test_two_databases_on_one_account_stop_before_any_second_entry(tmp_path: Path) -> None:
    two = run_two_databases(tmp_path)
    assert two.alarm_raised and not two.problems, two.problems
    assert two.second_entries == 0 and two.second_orders == 0, two.line()
    assert two.first_entries >= 1 and two.signals >= 5, two.line()
    assert two.ok
