"""Race trials (``bench.race``) and chaos (``bench.chaos``), short variants.

The trial runs the real supervisor (PostgreSQL, ccxt over HTTP, websocket-client feeds)
against ``sim/`` with overlapping signals from four sources, fast syncs, moving prices, slow
and faulty order calls; every count that must hold, holds. The chaos variant runs it as a real
process under supervisord and SIGKILLs it three times. The counters themselves are checked
first: each one sees the violation it exists to catch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from actors.model import Key, OrderKind
from actors.ports import OrderRequest
from bench.chaos import CHAOS_SHORT, UnderSupervisord, run_chaos
from bench.race import SHORT, UnprotectedSampler, count, run_race
from infra.exchange import CcxtExchange, VenueConfig
from infra.store import PostgresStore
from sim.exchange import SimExchange
from sim.symbols import make_symbols
from testkit import pg

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.serial]

LINE = re.compile(
    r"^race: symbols=\d+ signals=\d+ duplicates=\d+ max_entry_orders_per_position=\d+"
    r" unprotected=\d+ lost_updates=\d+ unrecorded_signals=\d+$"
)


@pytest.fixture
def dsn(pg_admin: str) -> Iterator[str]:
    with pg.fresh_database(pg_admin) as d:
        yield d


@pytest.mark.timeout(60)
def test_the_counters_see_what_they_exist_to_catch(dsn: str) -> None:
    """A naked position, two executed entries for one position and fills the database never
    heard of: each is counted (a harness that counted nothing would pass any system)."""
    symbols = make_symbols(2)
    a, b = sorted(symbols)
    with SimExchange(symbols) as sim:
        ex = CcxtExchange("main", VenueConfig(base_url=sim.base_url, require_credentials=False))
        try:
            for cid in ("ps1e1", "ps1e2"):  # one position, its entry executed twice
                reply = ex.place_order(OrderRequest(Key("main", a), cid, OrderKind.ENTRY, "buy", 1))
                assert reply.result.value == "accepted", reply
        finally:
            ex.close()
        sampler = UnprotectedSampler(sim, bound_s=0.0)
        sampler.sample()
        sampler.sample()
        store = PostgresStore(dsn, migrate_schema=False)
        try:
            sent = [("sig-1", 0.0, True), ("sig-2", 0.0, False)]
            c = count(SHORT, sim, store, sent, [], sampler)
        finally:
            store.close()
    assert c.max_entry_orders_per_position == 2
    assert c.unprotected == 1 and a in " ".join(c.problems)
    # two entries the database does not know, and a position it does not hold
    assert c.lost_updates == 3
    # every signal sent counts, delivered at once or not (the feed re-sends the unanswered)
    assert c.signals == 2 and c.unrecorded_signals == 2
    assert b not in " ".join(c.problems)
    assert c.orphan_stops == 0 and c.closed_by_another == 0 and c.orphan_stops_sampled == 0
    assert not c.ok


@pytest.mark.timeout(60)
def test_the_leftover_stop_counters_see_a_stop_that_outlives_its_position(dsn: str) -> None:
    """Item A3 of "Money safety at the edges": an earlier position's stop left resting beside a
    newer position (sampled), still resting at the end (orphan) and closing the newer one."""
    symbols = make_symbols(1)
    (a,) = symbols
    key = Key("main", a)
    price = symbols[a]
    with SimExchange(symbols) as sim:
        ex = CcxtExchange("main", VenueConfig(base_url=sim.base_url, require_credentials=False))
        try:
            for req in (
                OrderRequest(key, "ps1e1", OrderKind.ENTRY, "buy", 1),
                OrderRequest(
                    key, "ps1s1", OrderKind.STOP_LOSS, "sell", 1, price * 0.9, False, True
                ),
                OrderRequest(key, "ps1c1", OrderKind.CLOSE, "sell", 1, reduce_only=True),
                OrderRequest(key, "ps2e1", OrderKind.ENTRY, "buy", 1),  # ps1s1 still rests
            ):
                assert ex.place_order(req).result.value == "accepted", req
            sampler = UnprotectedSampler(sim, bound_s=60.0)
            for _ in range(10):
                sampler.sample()  # one look in ten reads the order log
            store = PostgresStore(dsn, migrate_schema=False)
            try:
                at_rest = count(SHORT, sim, store, [], [], sampler)
                sim.set_price(a, price * 0.85)  # ps1s1 triggers: it closes position 2
                closed = count(SHORT, sim, store, [], [], sampler)
            finally:
                store.close()
        finally:
            ex.close()
    assert at_rest.orphan_stops == 1 and at_rest.orphan_stops_sampled == 1
    assert closed.closed_by_another == 1 and "ps1s1" in " ".join(closed.problems)
    assert not at_rest.ok and not closed.ok


@pytest.mark.timeout(180)
@pytest.mark.parametrize("venue", ["binanceusdm", "bybit"])
def test_short_race_trial_holds_every_count(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], venue: str
) -> None:
    c = run_race(replace(SHORT, venue=venue), dsn, tmp_path)
    assert c.ok, c.problems
    assert c.signals >= 20 and c.duplicates >= 5, c
    assert c.positions >= 3 and c.faults_fired >= 5, c
    assert c.max_entry_orders_per_position == 1
    assert LINE.match(c.line()), c.line()


@pytest.mark.timeout(300)
def test_chaos_sigkill_under_supervisord_keeps_every_count(dsn: str, tmp_path: Path) -> None:
    spec = replace(CHAOS_SHORT, duration_s=4.0)
    c = run_chaos(spec, dsn, tmp_path, kills=3)
    assert c.kills == 3
    assert c.ok, c.problems
    assert c.signals >= 10 and c.positions >= 3, c
    log = (tmp_path / "supervisord.log").read_text()
    assert log.count("exited: position-supervisor (terminated by SIGKILL") == 3, log
    assert "stopped: position-supervisor (exit status 0)" in log, log


def test_program_section_is_the_shipped_one(tmp_path: Path) -> None:
    """The chaos runner keeps deploy/'s stop and restart semantics; only paths change."""
    from bench.chaos import program_section

    section = program_section(tmp_path / "c.toml", tmp_path / "p.log")
    assert section["stopsignal"] == "TERM" and section["autorestart"] == "unexpected"
    assert section["exitcodes"] == "0" and "user" not in section
    assert "run --config" in section["command"]
    assert UnderSupervisord(tmp_path).sock.parent == tmp_path
