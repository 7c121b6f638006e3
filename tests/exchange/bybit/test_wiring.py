"""An account configured with ``exchange = "bybit"`` gets the ccxt adapter on the Bybit
venue (the configuration and the process wiring read ``VENUES``), and it trades there."""

from __future__ import annotations

from typing import Any

import pytest

from actors.messages import CallResult
from infra.config import ConfigError, parse_config
from infra.exchange import BINANCE_USDM, BYBIT_LINEAR, CcxtExchange
from sim.bybit import BybitExchange
from supervision.wiring import venue_config
from tests.exchange.bybit.conftest import API_KEY, API_SECRET, SYMBOL
from tests.exchange.conftest import entry

pytestmark = pytest.mark.timeout(30)


def _accounts(**accounts: dict[str, Any]) -> dict[str, Any]:
    return {
        "accounts": {
            name: {
                "rest_url": "http://127.0.0.1:1",
                "ws_url": "ws://127.0.0.1:1",
                "symbols": [SYMBOL],
                "credentials": "dummy",
                **extra,
            }
            for name, extra in accounts.items()
        }
    }


def test_exchange_bybit_builds_the_bybit_venue_next_to_a_binance_account() -> None:
    cfg = parse_config(_accounts(a={"exchange": "bybit"}, b={"exchange": "binanceusdm"}), {})
    assert cfg.accounts["a"].exchange == "bybit"
    a = venue_config(cfg.accounts["a"])
    b = venue_config(cfg.accounts["b"])
    assert a.resolve_venue() is BYBIT_LINEAR and b.resolve_venue() is BINANCE_USDM
    with pytest.raises(ConfigError, match="unsupported exchange"):
        parse_config(_accounts(a={"exchange": "bybit-spot"}), {})


@pytest.mark.integration
def test_a_bybit_account_from_the_configuration_trades_on_the_bybit_sim(
    bybit: BybitExchange,
) -> None:
    doc = _accounts(main={"exchange": "bybit", "rest_url": bybit.base_url})
    doc["accounts"]["main"].update(credentials="env", allow_insecure_transport=True)
    environ = {"PS_MAIN_API_KEY": API_KEY, "PS_MAIN_API_SECRET": API_SECRET}
    acc = parse_config(doc, environ).accounts["main"]
    ex = CcxtExchange("main", venue_config(acc), environ={})  # as supervision.wiring does
    try:
        assert ex.venue is BYBIT_LINEAR
        assert SYMBOL in ex.symbols
        assert ex.place_order(entry("ps1e1")).result is CallResult.ACCEPTED
        assert bybit.positions("main")[SYMBOL].qty == pytest.approx(0.01)
    finally:
        ex.close()
