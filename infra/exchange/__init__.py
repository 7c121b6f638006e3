"""The exchange adapter: :class:`CcxtExchange` implements :class:`actors.ports.ExchangePort`.

Modules, one job each: ``venues`` holds every exchange-specific parameter; ``client`` the
ccxt class with the adapter's hooks (limiter, wire info); ``pool`` one ccxt client per
calling thread and the markets they share; ``translate`` the pure translation between ccxt's
structures and the port's types; ``order_rules`` a request onto the market's rules;
``order_queries`` an order by client id and the open orders, as each venue answers them;
``errors`` the ccxt exception -> port outcome mapping; ``limits`` the account's request
limiter; ``listen_keys`` the user stream's listen key; ``ccxt_adapter`` the port methods.
"""

from infra.exchange.ccxt_adapter import AccountFetchError, CcxtExchange
from infra.exchange.errors import Op, Reason, classify
from infra.exchange.listen_keys import ListenKeys
from infra.exchange.pool import MarketsUnavailable, UnknownSymbol
from infra.exchange.translate import quantize_qty, rules_of_market
from infra.exchange.venues import (
    BINANCE_USDM,
    BYBIT_LINEAR,
    VENUES,
    ConfigError,
    Credentials,
    Venue,
    VenueConfig,
)

__all__ = [
    "BINANCE_USDM",
    "BYBIT_LINEAR",
    "VENUES",
    "AccountFetchError",
    "CcxtExchange",
    "ConfigError",
    "Credentials",
    "ListenKeys",
    "MarketsUnavailable",
    "Op",
    "Reason",
    "UnknownSymbol",
    "Venue",
    "VenueConfig",
    "classify",
    "quantize_qty",
    "rules_of_market",
]
