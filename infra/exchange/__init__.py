"""The exchange adapter: :class:`CcxtExchange` implements :class:`actors.ports.ExchangePort`.

``venues`` holds every exchange-specific parameter, ``errors`` the ccxt exception -> port
outcome mapping, ``ccxt_adapter`` the adapter itself (one ccxt client per calling thread).
"""

from infra.exchange.ccxt_adapter import (
    AccountFetchError,
    CcxtExchange,
    MarketsUnavailable,
    UnknownSymbol,
)
from infra.exchange.errors import Op, Reason, classify
from infra.exchange.venues import (
    BINANCE_USDM,
    VENUES,
    ConfigError,
    Credentials,
    Venue,
    VenueConfig,
    env_prefix,
)

__all__ = [
    "BINANCE_USDM",
    "VENUES",
    "AccountFetchError",
    "CcxtExchange",
    "ConfigError",
    "Credentials",
    "MarketsUnavailable",
    "Op",
    "Reason",
    "UnknownSymbol",
    "Venue",
    "VenueConfig",
    "classify",
    "env_prefix",
]
