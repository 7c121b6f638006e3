"""The ownership keys of the configuration: ``[ownership]`` and ``database.account_lock_wait``
(true, false or seconds). Bad values are configuration errors naming the key, never a crash."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.config import ConfigError, OwnershipConfig, parse_config

pytestmark = pytest.mark.timeout(60)

BASE: dict[str, Any] = {
    "accounts": {
        "main": {
            "rest_url": "http://127.0.0.1:1",
            "ws_url": "ws://127.0.0.1:1",
            "symbols": ["BTCUSDT"],
            "credentials": "dummy",
        }
    }
}


def _parse(**sections: dict[str, Any]) -> Any:
    doc = copy.deepcopy(BASE)
    doc.update(sections)
    return parse_config(doc, {})


def test_defaults_and_values() -> None:
    cfg = _parse()
    assert cfg.ownership == OwnershipConfig()
    assert (cfg.ownership.lease_s, cfg.ownership.renew_s, cfg.ownership.fence_margin_s) == (
        10.0,
        2.0,
        2.0,
    )
    assert cfg.database.account_lock_wait is False and not cfg.database.wait_for_accounts
    cfg = _parse(
        ownership={"lease_s": 3, "renew_s": 0.5, "fence_margin_s": 1, "max_accounts": 2},
        database={"account_lock_wait": True},
    )
    assert cfg.ownership.max_accounts == 2 and cfg.database.wait_for_accounts
    assert cfg.database.wait_limit_s is None
    cfg = _parse(database={"account_lock_wait": 45})
    assert cfg.database.wait_for_accounts and cfg.database.wait_limit_s == 45.0


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"ownership": {"fence_margin_s": 10}}, "ownership.fence_margin_s: must be below"),
        ({"ownership": {"renew_s": 8}}, "ownership.renew_s: must be below lease_s"),
        ({"ownership": {"lease_s": 0}}, "ownership.lease_s: must be above 0"),
        ({"ownership": {"max_accounts": 0}}, "ownership.max_accounts: must be at least 1"),
        ({"ownership": {"max_accounts": 1.5}}, "ownership.max_accounts: must be an integer"),
        ({"ownership": {"lease": 10}}, "ownership.lease"),
        ({"database": {"account_lock_wait": "forever"}}, "account_lock_wait: must be true"),
        ({"database": {"account_lock_wait": 0}}, "account_lock_wait: must be above 0"),
        ({"database": {"account_lock_wait": float("nan")}}, "account_lock_wait: must be a"),
    ],
)
def test_bad_values_name_the_key(sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        _parse(**sections)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers()),
)
KEYS = [
    ("ownership", "lease_s"),
    ("ownership", "renew_s"),
    ("ownership", "fence_margin_s"),
    ("ownership", "max_accounts"),
    ("ownership", "hold_signals_s"),
    ("database", "account_lock_wait"),
]


@settings(max_examples=200, deadline=None)
@given(edits=st.lists(st.tuples(st.sampled_from(KEYS), SCALARS), min_size=1, max_size=4))
def test_any_value_is_accepted_or_a_configuration_error(
    edits: list[tuple[tuple[str, str], Any]],
) -> None:
    doc = copy.deepcopy(BASE)
    for (section, key), value in edits:
        doc.setdefault(section, {})[key] = value
    try:
        cfg = parse_config(doc, {})
    except ConfigError:
        return
    o = cfg.ownership
    assert 0 < o.fence_margin_s < o.lease_s and o.renew_s < o.lease_s - o.fence_margin_s
