"""A local Bybit v5 exchange (linear USDT perpetuals) on the sim's matching engine.

Standard library only; imports nothing from the product. See sim/README.md ("Bybit v5")
and BYBIT_WIRE.md.
"""

from sim.bybit.errors import BybitError
from sim.bybit.exchange import DEFAULT_SECRET, AccountBook, BybitExchange, sign
from sim.bybit.limits import BYBIT_V5, BybitLimitBook

__all__ = [
    "BYBIT_V5",
    "DEFAULT_SECRET",
    "AccountBook",
    "BybitError",
    "BybitExchange",
    "BybitLimitBook",
    "sign",
]
