"""The venues as the integration tests run them: the sim speaking each venue's wire, the
account's configuration for it, and the exchange's own ledger read the same way on both.

Who calls: test modules parametrised over :data:`VENUES` (``tests/scenarios/test_live.py``,
``tests/store/test_recovery.py``), on the test thread. Nothing here is a fake: the sim is
the local exchange (``sim.SimExchange`` for Binance USD-M, ``sim.bybit.BybitExchange`` for
Bybit v5, the same matching engine), reached over HTTP and WebSocket by the real ccxt and
websocket-client. The ledger helpers read the sim's own books, never the product's state.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from infra.config import DUMMY_API_KEY, DUMMY_API_SECRET
from infra.exchange import CcxtExchange, VenueConfig
from sim import SimExchange
from sim.bybit import BybitExchange
from sim.faults import BYBIT_ORDER_CREATE, ORDER_CREATE

__all__ = [
    "ENTRY_IDS",
    "STOP_IDS",
    "VENUES",
    "adapters",
    "create_paths",
    "executed",
    "make_sim",
    "resting_stops",
    "sent",
    "venue_config",
]

VENUES = ("binanceusdm", "bybit")
"""Every venue the product trades on (``infra.exchange.venues.VENUES``'s names)."""

ENTRY_IDS = "ps*e*"
"""Client ids of our entry orders (``ps<position>e<n>``), as a fault's ``client_id``."""
STOP_IDS = "ps*s*"
"""Client ids of our stop-loss orders (``ps<position>s<n>``)."""


def make_sim(venue: str, symbols: Mapping[str, float] | None = None, seed: int = 11) -> SimExchange:
    """The sim speaking ``venue``'s wire, not started. Bybit's checks every request's
    signature against the dummy key pair the tests' accounts use."""
    prices = dict(symbols) if symbols is not None else None
    if venue == "binanceusdm":
        return SimExchange(prices, seed=seed)
    if venue == "bybit":
        return BybitExchange(prices, seed=seed, secrets={DUMMY_API_KEY: DUMMY_API_SECRET})
    raise ValueError(f"no sim for venue {venue!r}")


def venue_config(venue: str, sim: SimExchange, **changes: Any) -> VenueConfig:
    """The adapter's configuration for an account on ``sim``: its URL, the dummy pair, no
    limiter (the sim answers in a millisecond), short timeouts; ``changes`` override."""
    settings: dict[str, Any] = {
        "venue": venue,
        "base_url": sim.base_url,
        "require_credentials": False,
        "enable_rate_limit": False,
        "timeout_s": 3.0,
        "markets_retry_delay_s": 0.01,
        "retry_after_s": 0.5,
    }
    settings.update(changes)
    return VenueConfig(**settings)


@contextlib.contextmanager
def adapters(
    config: Callable[..., VenueConfig], account: str = "main"
) -> Iterator[Callable[..., CcxtExchange]]:
    """A factory of adapters for ``account``, each on ``config(**changes)``; every adapter it
    made is closed on leaving (the adapter tests' ``make_exchange`` fixtures)."""
    made: list[CcxtExchange] = []

    def make(**changes: Any) -> CcxtExchange:
        ex = CcxtExchange(account, config(**changes))
        made.append(ex)
        return ex

    try:
        yield make
    finally:
        for ex in made:
            ex.close()


def create_paths(venue: str) -> list[str]:
    """The paths that place orders on ``venue`` (a fault's ``path``): Binance's plain and
    algo endpoints; Bybit's one create endpoint (aim at a kind with ``client_id``)."""
    pairs = ORDER_CREATE if venue == "binanceusdm" else BYBIT_ORDER_CREATE
    return [path for _, path in pairs]


def executed(sim: SimExchange, pattern: str, symbol: str | None = None) -> int:
    """Orders the exchange accepted whose client id matches the shell-style ``pattern``
    (the sim's order log: what reached its matching engine)."""
    return sum(
        1
        for e in sim.order_log()
        if e.outcome == "accepted"
        and fnmatch.fnmatchcase(e.client_id, pattern)
        and (symbol is None or e.symbol == symbol)
    )


def sent(sim: SimExchange, pattern: str, symbol: str | None = None) -> list[Any]:
    """Every order-placing request whose client id matches ``pattern``, in the order the
    exchange received them, whatever became of them (the sim's order log)."""
    return [
        e
        for e in sim.order_log()
        if fnmatch.fnmatchcase(e.client_id, pattern) and (symbol is None or e.symbol == symbol)
    ]


def resting_stops(sim: SimExchange, symbol: str) -> list[Any]:
    """Stop-loss orders resting on the exchange for ``symbol`` (the sim's books)."""
    return [
        o
        for o in sim.open_orders()
        if o.symbol == symbol and o.kind == "algo" and o.type == "STOP_MARKET"
    ]
