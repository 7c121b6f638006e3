"""A local Binance USD-M futures exchange and signal feed for tests, the demo and benchmarks.

Standard library only; imports nothing from the product. See sim/README.md.
"""

from sim.errors import BinanceError
from sim.exchange import OpenOrderView, OrderLogEntry, PositionView, SimExchange
from sim.faults import KINDS as FAULT_KINDS
from sim.faults import Fault
from sim.matching import MatchingEngine
from sim.rest import DEFAULT_ACCOUNT
from sim.signals import SignalFeed
from sim.symbols import DEFAULT_SYMBOLS, SymbolSpec, make_symbols

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_SYMBOLS",
    "FAULT_KINDS",
    "BinanceError",
    "Fault",
    "MatchingEngine",
    "OpenOrderView",
    "OrderLogEntry",
    "PositionView",
    "SignalFeed",
    "SimExchange",
    "SymbolSpec",
    "make_symbols",
]
