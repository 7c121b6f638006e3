"""Pure parse and validate functions for every frame the feeds receive, one module per feed.

Nothing here does I/O, keeps state or raises for bad input: each function returns a value or
a :class:`Refusal` whose ``reason`` is a short label from a closed set (safe as a metric
label) and whose ``detail`` says more for the log line (never a secret: frames carry none).

* :func:`parse_mark_prices` (``_market``): a ``markPriceUpdate`` frame (raw, combined
  ``{"stream","data"}`` or ``!markPrice@arr`` array) into :class:`MarkPrice` values;
* :func:`parse_user_event` (``_user``): one user-data-stream frame (``ORDER_TRADE_UPDATE``,
  ``ALGO_UPDATE``, ``ACCOUNT_UPDATE``, ``listenKeyExpired``) into a :class:`UserEvent`;
* :func:`parse_bybit_private` and :func:`parse_bybit_ticker` (``_bybit``): one frame of
  Bybit's v5 private stream (rows into the same events as Binance's) or public
  ``tickers.<symbol>`` stream, and :class:`OpReply`, the answer to one of our requests;
* :func:`parse_signal` (``_signal``): one signal-feed frame into an
  :class:`~actors.messages.OpenSignal`, validated against the schema (README "Signal feed"),
  the configuration and finally :func:`actors.transition.validate_signal`; its refusal
  reasons are listed in that module;
* what they share (``_common``): :class:`Refusal`, JSON decoding, numbers, :func:`preview`.
"""

from infra.feeds.parsing._bybit import (
    ORDER_STATUS,
    OpReply,
    TickerUpdate,
    parse_bybit_private,
    parse_bybit_ticker,
)
from infra.feeds.parsing._common import Refusal, preview
from infra.feeds.parsing._market import MarkPrice, parse_mark_prices
from infra.feeds.parsing._signal import (
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    SignalRules,
    parse_signal,
)
from infra.feeds.parsing._user import (
    AccountEvent,
    ListenKeyExpired,
    OrderEvent,
    OtherEvent,
    UserEvent,
    parse_user_event,
)

__all__ = [
    "OPTIONAL_FIELDS",
    "ORDER_STATUS",
    "REQUIRED_FIELDS",
    "AccountEvent",
    "ListenKeyExpired",
    "MarkPrice",
    "OpReply",
    "OrderEvent",
    "OtherEvent",
    "Refusal",
    "SignalRules",
    "TickerUpdate",
    "UserEvent",
    "parse_bybit_private",
    "parse_bybit_ticker",
    "parse_mark_prices",
    "parse_signal",
    "parse_user_event",
    "preview",
]
