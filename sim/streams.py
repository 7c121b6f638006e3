"""Stream subscriptions and fan-out for the exchange's WebSocket endpoints.

Paths (Binance USD-M market/user streams):

- ``/ws/<stream>`` (also ``/ws/<s1>/<s2>``): raw events;
- ``/stream?streams=<s1>/<s2>``: combined, each event wrapped as ``{"stream": s, "data": e}``;
- a ``{"method": "SUBSCRIBE" | "UNSUBSCRIBE" | "LIST_SUBSCRIPTIONS", "params": [...], "id": n}``
  text message changes the subscriptions of an open connection.

Streams: ``<symbol>@markPrice``, ``<symbol>@markPrice@1s``, ``!markPrice@arr``,
``!markPrice@arr@1s`` (kind "market") and ``<listenKey>`` (kind "user").

``StreamHub`` is thread-safe. ``publish`` only queues frames on the connections
(non-blocking) and returns (connection, sequence) pairs a caller may wait on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from sim.websocket import OP_TEXT, WsConnection, encode_frame

MARK_SUFFIXES = ("@markPrice", "@markPrice@1s")
ARR_STREAMS = ("!markPrice@arr", "!markPrice@arr@1s")


def stream_kind(name: str, is_listen_key: Callable[[str], bool]) -> str | None:
    """ "market", "user", or None for a stream this exchange does not serve."""
    if name in ARR_STREAMS:
        return "market"
    for suffix in MARK_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return "market"
    if is_listen_key(name):
        return "user"
    return None


def mark_streams(symbol: str) -> tuple[str, str]:
    """The per-symbol mark-price stream names of ``symbol`` (Binance id)."""
    low = symbol.lower()
    return (low + MARK_SUFFIXES[0], low + MARK_SUFFIXES[1])


class StreamHub:
    """Which connection listens to which stream; fan-out of JSON text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[WsConnection]] = {}
        self._conn_streams: dict[WsConnection, set[str]] = {}
        self._combined: set[WsConnection] = set()
        self._changed = threading.Condition(self._lock)

    def attach(self, conn: WsConnection, streams: Iterable[str], *, combined: bool) -> None:
        """Register a new connection with its initial streams."""
        with self._lock:
            self._conn_streams[conn] = set()
            if combined:
                self._combined.add(conn)
            self._add(conn, streams)

    def subscribe(self, conn: WsConnection, streams: Iterable[str]) -> None:
        """Add streams to an attached connection."""
        with self._lock:
            if conn in self._conn_streams:
                self._add(conn, streams)

    def unsubscribe(self, conn: WsConnection, streams: Iterable[str]) -> None:
        """Remove streams from an attached connection."""
        with self._lock:
            mine = self._conn_streams.get(conn)
            if mine is None:
                return
            for s in streams:
                mine.discard(s)
                subs = self._subs.get(s)
                if subs is not None:
                    subs.discard(conn)
                    if not subs:
                        del self._subs[s]
            self._changed.notify_all()

    def streams_of(self, conn: WsConnection) -> list[str]:
        """Streams of one connection."""
        with self._lock:
            return sorted(self._conn_streams.get(conn, ()))

    def detach(self, conn: WsConnection) -> None:
        """Forget a closed connection."""
        with self._lock:
            for s in self._conn_streams.pop(conn, set()):
                subs = self._subs.get(s)
                if subs is not None:
                    subs.discard(conn)
                    if not subs:
                        del self._subs[s]
            self._combined.discard(conn)
            self._changed.notify_all()

    def _add(self, conn: WsConnection, streams: Iterable[str]) -> None:
        for s in streams:
            self._conn_streams[conn].add(s)
            self._subs.setdefault(s, set()).add(conn)
        self._changed.notify_all()

    def snapshot(self) -> dict[str, int]:
        """Listeners per stream."""
        with self._lock:
            return {s: len(c) for s, c in self._subs.items()}

    def has(self, stream: str) -> bool:
        """True when someone listens to ``stream``."""
        return stream in self._subs

    def count(self, stream: str) -> int:
        """How many connections listen to ``stream``."""
        with self._lock:
            return len(self._subs.get(stream, ()))

    def connections(self, predicate: Callable[[str], bool] | None = None) -> list[WsConnection]:
        """Connections with at least one stream matching ``predicate`` (all if None)."""
        with self._lock:
            return [
                c
                for c, streams in self._conn_streams.items()
                if predicate is None or any(predicate(s) for s in streams)
            ]

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` (evaluated under the hub lock) holds."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def subscribers(self, stream: str) -> int:
        """Unlocked count, for use inside ``wait_for`` predicates."""
        return len(self._subs.get(stream, ()))

    def publish(self, stream: str, data_json: str) -> list[tuple[WsConnection, int]]:
        """Queue ``data_json`` (a JSON document) to every listener of ``stream``."""
        subs = self._subs.get(stream)
        if not subs:
            return []
        with self._lock:
            targets = list(self._subs.get(stream, ()))
            combined = [c in self._combined for c in targets]
        raw_frame: bytes | None = None
        wrapped_frame: bytes | None = None
        out: list[tuple[WsConnection, int]] = []
        for conn, wrap in zip(targets, combined, strict=True):
            if wrap:
                if wrapped_frame is None:
                    text = '{"stream":"' + stream + '","data":' + data_json + "}"
                    wrapped_frame = encode_frame(OP_TEXT, text.encode("utf-8"))
                frame = wrapped_frame
            else:
                if raw_frame is None:
                    raw_frame = encode_frame(OP_TEXT, data_json.encode("utf-8"))
                frame = raw_frame
            seq = conn.send_frame(frame)
            if seq:
                out.append((conn, seq))
        return out
