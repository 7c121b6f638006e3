"""The venue's order and position queries through ccxt: one order by client id, the open
orders, the open positions.

Who calls: :class:`~infra.exchange.ccxt_adapter.CcxtExchange` (lookups, the duplicate check
of a placement, the account view), on the calling thread with that thread's hooked ccxt
client (:mod:`infra.exchange.client`), already armed with the call's limiter priority.

How each venue answers them is data on its :class:`~infra.exchange.venues.Venue`:

* :func:`find_order` tries the venue's ``lookup_calls`` in turn until one finds the order.
  Binance: one ``fetch_order`` by client id (it sees every order). Bybit: ``fetch_order``
  on a unified account sees only the last 500 orders (and asks ``acknowledged=True``), so
  the open orders (``/v5/order/realtime``), the latest closed ones (``openOnly=1``, real
  time) and the order history (``/v5/order/history``: every order, but Bybit says it may
  lag) are searched for the ``orderLinkId``, conditional orders with the trigger flag.
* :func:`open_orders` lists one kind of open order (plain or conditional), page after page
  when the venue pages them (Bybit: 50 a page, by ``nextPageCursor``).
* :func:`open_positions` lists the positions, page after page when the venue pages them
  (Bybit: 200 a page). A short list is the worst answer a sync can get (it would take the
  positions left out for closed on the exchange), so it is every page or an exception.

Failure: any ccxt or network error propagates (the adapter classifies it); a call that
finds nothing is not one: :func:`find_order` returns None when no call found the order.
:func:`open_orders` and :func:`open_positions` raise :class:`TooManyOrders` rather than
return a partial list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ccxt

from infra.exchange.venues import Venue

__all__ = ["MAX_PAGES", "TooManyOrders", "find_order", "open_orders", "open_positions"]

#: At most this many pages per list (Bybit: 50 open orders or 200 positions a page).
MAX_PAGES = 20


class TooManyOrders(Exception):
    """An open-order or position list runs past :data:`MAX_PAGES` pages: nothing partial
    is returned."""


def find_order(
    venue: Venue, client: Any, symbol: str, client_id: str, trigger: bool
) -> Mapping[str, Any] | None:
    """The ccxt order holding ``client_id`` on unified ``symbol`` (a conditional one when
    ``trigger``), or None when none of the venue's lookup calls finds it.

    A method whose name ends in ``_orders`` returns a list, called ``(symbol, None, None,
    params)`` and searched for the client id; any other is called ``(None, symbol, params)``
    and raises ``OrderNotFound`` when it finds nothing. ``client.ps_sent`` is cleared before
    each call, so a failure says whether *its* request left.
    """
    for method, extra in venue.lookup_calls:
        params: dict[str, Any] = {venue.client_id_param: client_id, **extra}
        if trigger:
            params.update(venue.trigger_flag)
        client.ps_sent = False
        try:
            if method.endswith("_orders"):
                order = holding(getattr(client, method)(symbol, None, None, params), client_id)
            else:
                order = getattr(client, method)(None, symbol, params)
        except ccxt.OrderNotFound:
            continue
        if order is not None:
            return order
    return None


def open_orders(venue: Venue, client: Any, flag: Mapping[str, object]) -> list[Any]:
    """Every open order of one kind (``flag``: the venue's plain filter or trigger flag), of
    every symbol, page after page when the venue lists them in pages
    (:attr:`Venue.list_page_size`). Raises what ccxt raises, or :class:`TooManyOrders`."""
    size, cursor = venue.list_page_size, venue.list_cursor
    if size is None or cursor is None:
        return list(client.fetch_open_orders(None, None, None, dict(flag)))
    field, param = cursor
    orders: list[Any] = []
    params: dict[str, Any] = dict(flag)
    for _ in range(MAX_PAGES):
        page = list(client.fetch_open_orders(None, None, size, dict(params)))
        orders.extend(page)
        nxt = page_cursor(page, field)
        if len(page) < size or not nxt:
            return orders
        params[param] = nxt
    raise TooManyOrders(f"more than {MAX_PAGES * size} open orders")


def open_positions(venue: Venue, client: Any) -> list[Any]:
    """Every position ccxt's ``fetch_positions`` reports, page after page when the venue
    lists them in pages (:attr:`Venue.positions_page_size`). Raises what ccxt raises, or
    :class:`TooManyOrders`; never a partial list."""
    size, cursor = venue.positions_page_size, venue.list_cursor
    if size is None or cursor is None:
        return list(client.fetch_positions())
    field, param = cursor
    positions: list[Any] = []
    params: dict[str, Any] = {"limit": size}
    for _ in range(MAX_PAGES):
        page = list(client.fetch_positions(None, dict(params)))
        positions.extend(page)
        nxt = page_cursor(page, field)
        if not nxt:
            return positions
        params[param] = nxt
    raise TooManyOrders(f"more than {MAX_PAGES} pages of positions")


def page_cursor(page: list[Any], field: str) -> Any:
    """The next page's cursor that ccxt put in one order's ``info`` (bybit: the first's)."""
    for order in page:
        info = order.get("info") if isinstance(order, Mapping) else None
        value = info.get(field) if isinstance(info, Mapping) else None
        if value:
            return value
    return None


def holding(orders: Any, client_id: str) -> Mapping[str, Any] | None:
    """The order of a ccxt order list whose client id is ``client_id`` (None: none)."""
    for order in orders if isinstance(orders, list) else []:
        if isinstance(order, Mapping) and order.get("clientOrderId") == client_id:
            return order
    return None
