"""Binance's user-stream listen key (``POST``/``PUT /fapi/v1/listenKey``) through ccxt.

Who calls: the account's :class:`~infra.feeds.user_stream.UserDataStream` (its runner thread
creates a key before each connection, its keep-alive thread extends it), through
:attr:`~infra.exchange.ccxt_adapter.CcxtExchange.listen_keys`. :class:`ListenKeys` is the
stream's :class:`~infra.feeds.user_stream.ListenKeySource`.

The calls go through the account's own ccxt clients (:class:`~infra.exchange.pool.ClientPool`,
one per calling thread): the same base URL, timeouts and account limiter as the orders (each
call reserves its weight at ``Priority.READ`` before it leaves), and the same wire info on
errors. ccxt's binance ``sign()`` sends only the ``X-MBX-APIKEY`` header for the listenKey
paths (no timestamp, no signature); the key stays inside the client and is never logged.

Failure: every failure raises :class:`~infra.feeds.user_stream.ListenKeyError` (the stream
retries with its backoff); the exchange's -1125 ("this listenKey does not exist") raises
:class:`~infra.feeds.user_stream.ListenKeyMissing` (the stream reconnects with a new key).
"""

from __future__ import annotations

import re
from typing import Any

from infra.exchange.client import arm
from infra.exchange.errors import describe, wire_of
from infra.exchange.limits import Priority
from infra.exchange.pool import ClientPool
from infra.feeds.user_stream import ListenKeyError, ListenKeyMissing

__all__ = ["ListenKeys"]

_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_MISSING_CODE = -1125
#: ccxt's implicit methods of binanceusdm for the two calls.
_CREATE = "fapiPrivatePostListenKey"
_KEEPALIVE = "fapiPrivatePutListenKey"


class ListenKeys:
    """The listen key of the account whose clients ``pool`` holds (module docstring).

    Blocking (the clients' timeout, and at most ``timeout_s`` waiting for the limiter);
    thread-safe (one client per calling thread).
    """

    def __init__(self, pool: ClientPool) -> None:
        self._pool = pool

    def __repr__(self) -> str:
        return f"ListenKeys({self._pool.account!r})"

    def create(self) -> str:
        """A listen key (the account's active one, extended, or a new one)."""
        reply = self._call("POST", _CREATE)
        key = reply.get("listenKey") if isinstance(reply, dict) else None
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ListenKeyError("reply carries no usable listenKey")
        return key

    def keepalive(self) -> None:
        """Extend the active key; :class:`ListenKeyMissing` if it no longer exists."""
        self._call("PUT", _KEEPALIVE)

    def _call(self, method: str, name: str) -> Any:
        try:
            client = self._pool.client()
            arm(client, Priority.READ, self._pool.config.timeout_s)
            return getattr(client, name)()
        except Exception as exc:
            info = wire_of(exc)
            code = _int(info.code)
            cls = ListenKeyMissing if code == _MISSING_CODE else ListenKeyError
            raise cls(
                f"{method} listenKey: HTTP {info.http_status} {code} {describe(exc, 160)}",
                info.http_status,
                code,
            ) from None


def _int(code: str | None) -> int | None:
    try:
        return None if code is None else int(code)
    except ValueError:
        return None
