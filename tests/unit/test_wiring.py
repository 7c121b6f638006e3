"""The composition root's mappings (:mod:`supervision.wiring`): the configuration's plain
sections become the supervisor's types, and each account's worker pool has its own size."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any

import pytest

from actors.effects import LookupOrder
from actors.model import Key, OrderKind
from actors.ports import SystemClock
from actors.state import Installation
from infra.config import (
    DUMMY_API_KEY,
    DUMMY_API_SECRET,
    Config,
    ConfigError,
    RestartConfig,
    parse_config,
)
from supervision.restart import RestartPolicy
from supervision.supervisor import Supervisor
from supervision.wiring import (
    close_logged,
    lease_settings,
    restart_policy,
    supervisor_config,
    venue_config,
)
from testkit.exchange import InMemoryExchange
from testkit.store import InMemoryStore
from testkit.waiting import poll

pytestmark = pytest.mark.timeout(30)

WAIT = 5.0


def _config(**accounts: dict[str, Any]) -> Config:
    doc: dict[str, Any] = {
        "accounts": {
            name: {
                "rest_url": "http://127.0.0.1:1",
                "ws_url": "ws://127.0.0.1:1",
                "symbols": ["BTCUSDT"],
                "credentials": "dummy",
                **extra,
            }
            for name, extra in accounts.items()
        },
        "restart": {"max_restarts": 2, "jitter": 0.5},
        "ownership": {"lease_s": 20.0, "renew_s": 1.5, "max_accounts": 3},
        "database": {"account_lock_wait": True},
    }
    return parse_config(doc, {})


def test_restart_section_maps_to_the_policy_field_for_field() -> None:
    cfg = _config(main={})
    policy = restart_policy(cfg.restart)
    assert isinstance(policy, RestartPolicy)
    assert dataclasses.astuple(policy) == dataclasses.astuple(cfg.restart)
    assert policy.max_restarts == 2 and policy.jitter == 0.5
    assert RestartPolicy() == restart_policy(RestartConfig()), "one set of defaults"


def test_lease_settings_come_from_ownership_and_database() -> None:
    s = lease_settings(_config(main={}))
    assert (s.lease_s, s.renew_s, s.max_accounts, s.wait) == (20.0, 1.5, 3, True)
    assert s.timeout == 1.5 and s.hold_s == 30.0


def test_the_installation_reaches_every_policy() -> None:
    cfg = _config(a={}, b={"risk": {"max_notional": 5.0}})
    inst = Installation(123456)
    sc = supervisor_config(cfg, inst)
    assert sc.policy.installation == inst
    assert {a: p.installation for a, p in sc.account_policies.items()} == {"a": inst, "b": inst}
    assert sc.account_policies["b"].max_notional == 5.0
    assert supervisor_config(cfg).policy.installation is None


def _pool_threads(account: str) -> int:
    return sum(t.name.startswith(f"xchg-{account}-") for t in threading.enumerate())


def _until(cond: Any, what: str) -> None:
    poll(cond, WAIT, what, error=TimeoutError)


def test_each_account_has_a_worker_pool_of_its_own_size() -> None:
    """``accounts.<name>.workers`` sizes that account's pool: a 1-worker account next to a
    3-worker one keeps 1 thread (not the largest account's 3) however many calls wait."""
    cfg = _config(small={"workers": 1}, big={"workers": 3})
    assert supervisor_config(cfg).account_workers == {"small": 1, "big": 3}
    gate = threading.Event()
    exchanges = {name: InMemoryExchange(name, {"BTCUSDT": 100.0}) for name in cfg.accounts}
    for ex in exchanges.values():
        ex.gate = gate
    sup = Supervisor(InMemoryStore(), exchanges, SystemClock(), config=supervisor_config(cfg))
    try:
        for name, ex in exchanges.items():
            # One call at a time, each blocked in the exchange before the next: a pool that
            # may grow starts a thread for every call (none of its threads is idle).
            for i in range(4):
                sup.submit(LookupOrder(Key(name, "BTCUSDT"), f"ps{i}e1", OrderKind.ENTRY))
                blocked = min(i + 1, cfg.accounts[name].workers)
                _until(lambda e=ex, n=blocked: e.calls_waiting == n, f"{name}: {blocked} waiting")
        assert _pool_threads("small") == 1
        assert _pool_threads("big") == 3
    finally:
        gate.set()
        sup.stop(5.0)


def test_a_failing_close_is_logged_and_the_rest_still_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[str] = []

    def broken() -> None:
        closed.append("store")
        raise OSError("disk gone")

    with contextlib.ExitStack() as stack:
        close_logged(stack, "embedded postgres", lambda: closed.append("embedded postgres"))
        close_logged(stack, "store", broken)
        close_logged(stack, "exchange main", lambda: closed.append("exchange main"))
    assert closed == ["exchange main", "store", "embedded postgres"], "reverse order, all"
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "closing store failed"
    ]


def test_one_credentials_rule_for_the_loader_and_the_venue() -> None:
    """The adapter's venue takes the pair the configuration resolved; without one it reads
    the environment by the same rule, with the same dummy pair where none is required."""
    from infra.exchange import ConfigError as VenueError
    from infra.exchange import Credentials, VenueConfig

    assert VenueError is ConfigError
    dummy = VenueConfig(require_credentials=False).credentials("main", {})
    assert (dummy.api_key, dummy.secret) == (DUMMY_API_KEY, DUMMY_API_SECRET)
    cfg = _config(main={})
    acc = cfg.accounts["main"]
    assert (acc.api_key, acc.api_secret) == (DUMMY_API_KEY, DUMMY_API_SECRET)
    given = venue_config(acc).credentials("main", {"PS_MAIN_API_KEY": "other"})
    assert given == Credentials(DUMMY_API_KEY, DUMMY_API_SECRET)
    with pytest.raises(ConfigError, match="set the environment variable PS_MAIN_API_SECRET"):
        VenueConfig().credentials("main", {"PS_MAIN_API_KEY": "k"})
