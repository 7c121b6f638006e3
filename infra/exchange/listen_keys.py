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

A venue without listen keys (:attr:`Venue.listen_key_calls` None: Bybit, whose private
stream is authenticated by an ``auth`` message signed with the key pair): :attr:`ListenKeys.
applicable` is False and both calls raise :class:`NoListenKey` (a ``ListenKeyError``) at
once, sending nothing: a stream wired to it by mistake logs that and backs off, never
crashes. Such a venue's stream takes the venue name and the key pair instead
(:attr:`~infra.exchange.ccxt_adapter.CcxtExchange.venue`, ``.credentials``).
"""

from __future__ import annotations

import re
from typing import Any

from infra.exchange.client import arm
from infra.exchange.errors import describe, wire_of
from infra.exchange.limits import Priority
from infra.exchange.pool import ClientPool
from infra.feeds.user_stream import ListenKeyError, ListenKeyMissing

__all__ = ["ListenKeys", "NoListenKey"]

_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")


class NoListenKey(ListenKeyError):
    """The venue has no listen key (not applicable, not a failure to retry soon)."""


class ListenKeys:
    """The listen key of the account whose clients ``pool`` holds (module docstring).

    Blocking (the clients' timeout, and at most ``timeout_s`` waiting for the limiter);
    thread-safe (one client per calling thread).
    """

    def __init__(self, pool: ClientPool) -> None:
        self._pool = pool
        self._calls = pool.venue.listen_key_calls
        self._missing = pool.venue.listen_key_missing_code

    def __repr__(self) -> str:
        shown = "" if self.applicable else ", not applicable"
        return f"ListenKeys({self._pool.account!r}{shown})"

    @property
    def applicable(self) -> bool:
        """False for a venue without listen keys (see the module docstring)."""
        return self._calls is not None

    def _method(self, which: int) -> str:
        if self._calls is None:
            raise NoListenKey(
                f"venue {self._pool.venue.name} has no listen key: its private stream"
                " authenticates with the account's key pair"
            )
        return self._calls[which]

    def create(self) -> str:
        """A listen key (the account's active one, extended, or a new one)."""
        reply = self._call("POST", self._method(0))
        key = reply.get("listenKey") if isinstance(reply, dict) else None
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ListenKeyError("reply carries no usable listenKey")
        return key

    def keepalive(self) -> None:
        """Extend the active key; :class:`ListenKeyMissing` if it no longer exists."""
        self._call("PUT", self._method(1))

    def _call(self, method: str, name: str) -> Any:
        try:
            client = self._pool.client()
            arm(client, Priority.READ, self._pool.config.timeout_s)
            return getattr(client, name)()
        except Exception as exc:
            info = wire_of(exc)
            code = _int(info.code)
            missing = code is not None and code == self._missing
            cls = ListenKeyMissing if missing else ListenKeyError
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
