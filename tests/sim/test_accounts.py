"""Several accounts on one sim exchange, told apart by API key, through the real ccxt and
websocket-client: positions, orders, balances and user streams per account; logs that say
which key sent each request; a cancel that honours the symbol as Binance does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import ccxt
import pytest

from sim import SimExchange
from tests.sim.conftest import SYMBOL, WsReader, make_ccxt

pytestmark = pytest.mark.timeout(30)

ETH = "ETH/USDT:USDT"


@pytest.fixture
def multi() -> Iterator[SimExchange]:
    with SimExchange(seed=7, accounts={"a1": ["key-a1", "key-a1-b"], "a2": ["key-a2"]}) as ex:
        yield ex


@pytest.fixture
def clients(multi: SimExchange) -> Iterator[Callable[[str], Any]]:
    made: list[Any] = []

    def client(api_key: str) -> Any:
        ex = make_ccxt(multi.base_url)
        ex.apiKey = api_key
        ex.load_markets()
        made.append(ex)
        return ex

    yield client
    for ex in made:
        ex.session.close()


def _stop(client: Any, cid: str, side: str = "sell", trigger: float = 55_000.0) -> Any:
    return client.create_order(
        SYMBOL,
        "STOP_MARKET",
        side,
        None,
        None,
        {"stopPrice": trigger, "closePosition": True, "clientOrderId": cid},
    )


def test_each_api_key_trades_its_own_account(
    multi: SimExchange, clients: Callable[[str], Any]
) -> None:
    a1, a1b, a2 = clients("key-a1"), clients("key-a1-b"), clients("key-a2")
    a1.create_order(SYMBOL, "market", "buy", 0.01, None, {"newClientOrderId": "ps1e1"})
    a2.create_order(SYMBOL, "market", "sell", 0.02, None, {"newClientOrderId": "ps1e1"})
    _stop(a1, "ps1s1")
    assert multi.positions("a1")["BTCUSDT"].qty == pytest.approx(0.01)
    assert multi.positions("a2")["BTCUSDT"].qty == pytest.approx(-0.02)
    assert multi.positions() == {}  # the default account saw nothing
    # Two keys of one account see the same account; the other account sees its own.
    assert [o["clientOrderId"] for o in a1b.fetch_open_orders(SYMBOL, params={"trigger": True})]
    assert [p["contracts"] for p in a1b.fetch_positions([SYMBOL])] == [pytest.approx(0.01)]
    assert a2.fetch_open_orders(SYMBOL, params={"trigger": True}) == []
    assert multi.wallet_balance("a1") != multi.wallet_balance("a2")
    bal1 = a1.fetch_balance()["USDT"]["total"]
    bal2 = a2.fetch_balance()["USDT"]["total"]
    assert bal1 == pytest.approx(multi.wallet_balance("a1"))
    assert bal2 == pytest.approx(multi.wallet_balance("a2"))
    # The same client id on two accounts is two orders; the log says who sent each.
    log = multi.order_log()
    assert [(e.client_id, e.account, e.api_key) for e in log] == [
        ("ps1e1", "a1", "key-a1"),
        ("ps1e1", "a2", "key-a2"),
        ("ps1s1", "a1", "key-a1"),
    ]
    assert [e.client_id for e in multi.order_log("a2")] == ["ps1e1"]
    ids = {e.order_id for e in log}
    assert len(ids) == 3, "order ids are unique across accounts"


def test_unknown_keys_use_the_default_account_unless_strict(
    multi: SimExchange, clients: Callable[[str], Any]
) -> None:
    other = clients("sim-dummy-key")
    other.create_order(SYMBOL, "market", "buy", 0.01)
    assert multi.positions()["BTCUSDT"].qty == pytest.approx(0.01)
    assert multi.positions("a1") == {} and multi.positions("a2") == {}
    with SimExchange(seed=7, accounts={"a1": ["key-a1"]}, strict_keys=True) as strict:
        ex = make_ccxt(strict.base_url)
        ex.apiKey = "not-a-key"
        try:
            ex.load_markets()  # public: no key needed
            with pytest.raises(ccxt.AuthenticationError):
                ex.fetch_balance()
            assert strict.order_log() == []
        finally:
            ex.session.close()


def test_user_streams_carry_only_their_account(
    multi: SimExchange, clients: Callable[[str], Any], ws_reader: Callable[..., WsReader]
) -> None:
    a1, a2 = clients("key-a1"), clients("key-a2")
    k1 = a1.fapiPrivatePostListenKey()["listenKey"]
    assert clients("key-a1-b").fapiPrivatePostListenKey()["listenKey"] == k1  # per account
    k2 = a2.fapiPrivatePostListenKey()["listenKey"]
    assert k1 != k2
    r1 = ws_reader(f"{multi.ws_url}/ws/{k1}")
    r2 = ws_reader(f"{multi.ws_url}/ws/{k2}")
    assert multi.wait_for_user_streams(2)
    a2.create_order(SYMBOL, "market", "buy", 0.01, None, {"newClientOrderId": "ps9e1"})
    ev = r2.wait_for(lambda m: m.get("e") == "ORDER_TRADE_UPDATE")
    assert ev["o"]["c"] == "ps9e1"
    assert r1.drain(0.3) == []
    # A mark price is the market's: it triggers stops of every account.
    _stop(a1, "ps1s1", trigger=59_000.0)
    a1.create_order(SYMBOL, "market", "buy", 0.01, None, {"newClientOrderId": "ps1e1"})
    r1.drain(0.2)
    multi.set_price("BTCUSDT", 58_000.0)
    done = r1.wait_for(lambda m: m.get("e") == "ALGO_UPDATE" and m["o"]["X"] == "FINISHED")
    assert done["o"]["caid"] == "ps1s1"
    assert multi.positions("a1") == {}
    assert multi.positions("a2")["BTCUSDT"].qty == pytest.approx(0.01)


def test_cancel_honours_the_symbol_and_is_logged(
    multi: SimExchange, clients: Callable[[str], Any]
) -> None:
    a1 = clients("key-a1")
    _stop(a1, "ps1s1")
    with pytest.raises(ccxt.OrderNotFound):
        a1.cancel_order(None, ETH, {"clientOrderId": "ps1s1", "trigger": True})
    assert [o.client_id for o in multi.open_orders("a1")] == ["ps1s1"]
    with pytest.raises(ccxt.OrderNotFound):  # another account's key cannot cancel it
        clients("key-a2").cancel_order(None, SYMBOL, {"clientOrderId": "ps1s1", "trigger": True})
    a1.cancel_order(None, SYMBOL, {"clientOrderId": "ps1s1", "trigger": True})
    assert multi.open_orders("a1") == []
    cancels = multi.cancel_log()
    assert [(e.client_id, e.symbol, e.account, e.api_key) for e in cancels] == [
        ("ps1s1", "ETHUSDT", "a1", "key-a1"),
        ("ps1s1", "BTCUSDT", "a2", "key-a2"),
        ("ps1s1", "BTCUSDT", "a1", "key-a1"),
    ]
    assert all(e.endpoint == "algoOrder" for e in cancels)
    assert [e.outcome for e in cancels] == ["rejected", "rejected", "accepted"]
