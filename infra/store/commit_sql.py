"""The one statement that writes a commit, and its values (used by
:meth:`~infra.store.postgres.PostgresStore.commit` on the committing actor's thread; pure, no
I/O; :func:`commit_values` raises ``TypeError``/``ValueError`` for what it cannot encode).

A single ``WITH`` statement in autocommit mode is one transaction and one round trip. Every
write in it is gated on the position write (``EXISTS (SELECT 1 FROM p)``), so a stale version
writes nothing at all; any error (a CHECK constraint, the I1 index, an accepted signal whose
id is recorded already) aborts all of it.

Fencing (I7): every statement carries the account's lease ``epoch`` (``NULL``: no fencing,
for tools and tests that own no lease). The CTE ``f`` checks it against ``leases`` and the
position write (or, without a position, the events and the signal) is gated on it, so a
commit of a process whose epoch is stale writes nothing at all; the statement's third column
says so (:class:`~actors.ports.Fenced`). The check locks the lease row ``FOR KEY SHARE``
until the commit ends: a takeover (which locks it ``FOR UPDATE``) waits for commits in flight,
and a commit that waited for a takeover sees the new epoch and is refused. A renewal (an
``UPDATE`` of ``expires_at`` only) does not conflict with it.

The orders, the events and the signal travel as one JSON array each, expanded with
``jsonb_to_recordset`` (non-finite floats arrive as the strings ``"NaN"``/``"Infinity"``,
which ``double precision`` accepts, so the CHECK constraints refuse them by name). The SQL is
written with named parameters and converted at import to ``$n`` for a raw cursor: psycopg
then neither parses the query nor dumps dozens of parameters on every commit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from actors.model import OrderRecord
from actors.state import Commit
from infra.store import codec

__all__ = [
    "CONTROL",
    "EVENTS_ONLY",
    "INSERT",
    "ORDER_FIELDS",
    "UPDATE",
    "Statement",
    "commit_values",
]

ORDER_FIELDS: tuple[tuple[str, str], ...] = (
    ("client_id", "text"),
    ("ord", "integer"),
    ("kind", "text"),
    ("side", "text"),
    ("qty", "double precision"),
    ("state", "text"),
    ("trigger_price", "double precision"),
    ("filled_qty", "double precision"),
    ("avg_price", "double precision"),
    ("exchange_id", "text"),
    ("event_time", "double precision"),
    ("sent_at", "double precision"),
    ("attempts", "integer"),
)
"""The keys of each object of the ``orders`` JSON array, with their SQL types."""

_O_NAMES = [n for n, _ in ORDER_FIELDS]
_O_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in _O_NAMES if c != "client_id")

_ORDERS = (
    "u_o AS (SELECT * FROM jsonb_to_recordset(%(orders)s::jsonb) AS u("
    + ", ".join(f"{n} {t}" for n, t in ORDER_FIELDS)
    + ")), "
)
# An existing client id of *another* position sets position_id to NULL: the NOT NULL
# constraint then aborts the whole statement (nothing written), with no lookup beforehand.
_ORDERS_WRITE = (
    f"o AS (INSERT INTO orders (position_id, {', '.join(_O_NAMES)}) "
    f"SELECT %(id)s::bigint, {', '.join('u_o.' + c for c in _O_NAMES)} FROM u_o "
    "WHERE EXISTS (SELECT 1 FROM p) "
    f"ON CONFLICT (client_id) DO UPDATE SET {_O_SET}, position_id = CASE "
    "WHEN orders.position_id = EXCLUDED.position_id THEN orders.position_id END "
    "RETURNING 1), "
)
_EVENTS = (
    "j AS (INSERT INTO journal (account, symbol, position_id, kind, status_before, "
    "status_after, at, detail, cause_type, cause) "
    "SELECT %(account)s::text, %(symbol)s::text, e.position_id, e.kind, e.status_before, "
    "e.status_after, e.at, e.detail, %(cause_type)s::text, %(cause)s::jsonb "
    "FROM jsonb_to_recordset(%(events)s::jsonb) AS e(position_id bigint, kind text, "
    "status_before text, status_after text, at double precision, detail jsonb) "
    "{where}RETURNING 1), "
    "g AS (SELECT * FROM jsonb_to_recordset(%(signal)s::jsonb) AS g(account text, "
    "symbol text, signal_id text, source text, outcome text, reason text, "
    "at double precision, position_id bigint, retry boolean)), "
    # The final decision on an id is bound in signal_ids (the signals_once key; the history
    # itself is partitioned by month and cannot hold a unique index on the id). An accepted
    # signal binds it without ON CONFLICT: an id already decided (a replay older than the
    # actor's memory) aborts the whole commit. A final refusal of an id decided already adds
    # nothing to either table; a refusal that allows a retry binds nothing and is recorded.
    "ia AS (INSERT INTO signal_ids (account, signal_id) SELECT g.account, g.signal_id "
    "FROM g {where_and}g.outcome = 'accepted' RETURNING 1), "
    "ir AS (INSERT INTO signal_ids (account, signal_id) SELECT g.account, g.signal_id "
    "FROM g {where_and}g.outcome <> 'accepted' AND NOT g.retry "
    "ON CONFLICT (account, signal_id) DO NOTHING RETURNING 1), "
    "s AS (INSERT INTO signals (account, symbol, signal_id, source, outcome, reason, at, "
    "position_id, retry) SELECT g.account, g.symbol, g.signal_id, g.source, g.outcome, "
    "g.reason, g.at, g.position_id, g.retry FROM g {where_and}(g.outcome = 'accepted' "
    "OR g.retry OR EXISTS (SELECT 1 FROM ir)) RETURNING 1) "
)
_GATE = "WHERE EXISTS (SELECT 1 FROM p) "
_RESULT = "SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM o), (SELECT ok FROM f)"
_FENCE = (
    "f AS (SELECT (%(epoch)s::bigint IS NULL OR EXISTS (SELECT 1 FROM leases "
    "WHERE account = %(account)s::text AND epoch = %(epoch)s::bigint FOR KEY SHARE)) AS ok), "
)
_FENCED = "(SELECT ok FROM f)"

_UPD_COLS = codec.POSITION_COLUMNS[3:]

_UPDATE = (
    "WITH "
    + _FENCE
    + _ORDERS
    + "p AS (UPDATE positions SET ("
    + ", ".join(_UPD_COLS)
    + ") = ROW("
    + ", ".join(f"%({c})s::{codec.POSITION_COLUMN_TYPES[c]}" for c in _UPD_COLS)
    + ") WHERE id = %(id)s::bigint AND account = %(account)s::text "
    "AND symbol = %(symbol)s::text AND version = %(expected)s::bigint "
    f"AND {_FENCED} RETURNING id), "
    + _ORDERS_WRITE
    + _EVENTS.format(where=_GATE, where_and=_GATE + "AND ")
    + _RESULT
)

_INSERT = (
    "WITH "
    + _FENCE
    + _ORDERS
    + "p AS (INSERT INTO positions ("
    + ", ".join(codec.POSITION_COLUMNS)
    + ") SELECT "
    + ", ".join(f"%({c})s::{codec.POSITION_COLUMN_TYPES[c]}" for c in codec.POSITION_COLUMNS)
    + f" WHERE {_FENCED} RETURNING id), "
    + _ORDERS_WRITE
    + _EVENTS.format(where=_GATE, where_and=_GATE + "AND ")
    + _RESULT
)

_EVENTS_ONLY = (
    "WITH "
    + _FENCE
    + _EVENTS.format(where=f"WHERE {_FENCED} ", where_and=f"WHERE {_FENCED} AND ")
    + f"SELECT {_FENCED}::integer, (SELECT count(*) FROM ir), {_FENCED}"
)


def _control(flag: str) -> str:
    """Events (and signal) plus the upsert of one flag of ``symbol_controls``, all gated on
    the epoch (I7) like :data:`EVENTS_ONLY`."""
    return (
        "WITH "
        + _FENCE
        + _EVENTS.format(where=f"WHERE {_FENCED} ", where_and=f"WHERE {_FENCED} AND ")
        + f", c AS (INSERT INTO symbol_controls (account, symbol, {flag}, {flag}_at, "
        f"{flag}_note) SELECT %(account)s::text, %(symbol)s::text, %(value)s::boolean, "
        f"%(at)s::double precision, %(note)s::text WHERE {_FENCED} "
        "ON CONFLICT (account, symbol) DO UPDATE "
        f"SET {flag} = EXCLUDED.{flag}, {flag}_at = EXCLUDED.{flag}_at, "
        f"{flag}_note = EXCLUDED.{flag}_note RETURNING 1) "
        f"SELECT {_FENCED}::integer, 0, {_FENCED}"
    )


class Statement:
    """A query with named parameters, converted to ``$n`` placeholders once."""

    __slots__ = ("names", "query")

    def __init__(self, named: str) -> None:
        names: list[str] = []

        def number(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.query = re.sub(r"%\((\w+)\)s", number, named)
        self.names = tuple(names)

    def params(self, values: dict[str, object]) -> list[object]:
        """The positional parameters for ``values`` (a KeyError names a missing one)."""
        return [values[n] for n in self.names]


UPDATE = Statement(_UPDATE)
"""Update the position at the expected version, upsert orders, append events and signal.
Returns ``(positions written, orders written, epoch current)``."""

INSERT = Statement(_INSERT)
"""Insert a new position (expected version 0) with its orders, events and signal."""

EVENTS_ONLY = Statement(_EVENTS_ONLY)
"""A commit without a position: events and signal only (gated on the epoch alone). Returns
``(epoch current, final refusals bound, epoch current)``: a final refusal that bound nothing
is of an id decided already (the caller raises ``SignalSeen``)."""

CONTROL = {flag: Statement(_control(flag)) for flag in ("paused", "quarantined")}
"""A commit without a position that sets a stored flag of the symbol, by flag."""


def commit_values(c: Commit, orders: Sequence[tuple[int, OrderRecord]]) -> dict[str, object]:
    """Named values of the commit statement for ``c``, writing ``orders`` (``(index, order)``
    of the position's orders to write; all of them or those that changed). ``epoch`` is
    the caller's to add."""
    cause_type, cause = codec.encode_message(c.cause)
    events = [
        {
            "position_id": ev.position_id,
            "kind": ev.kind,
            "status_before": codec.row_json(ev.status_before),
            "status_after": codec.row_json(ev.status_after),
            "at": codec.row_json(ev.at),
            "detail": codec.encode_detail(ev.detail),
        }
        for ev in c.events
    ]
    signals = []
    if c.signal is not None:
        r = c.signal
        signals.append(
            {
                "account": r.key.account,
                "symbol": r.key.symbol,
                "signal_id": r.signal_id,
                "source": r.source,
                "outcome": codec.row_json(r.outcome),
                "reason": r.reason,
                "at": codec.row_json(r.at),
                "position_id": r.position_id,
                "retry": r.retry,
            }
        )
    values: dict[str, object] = {
        "account": c.key.account,
        "symbol": c.key.symbol,
        "cause_type": cause_type,
        "cause": codec.dumps(cause),
        "events": codec.dumps(events),
        "signal": codec.dumps(signals),
    }
    if c.control is not None:
        values.update(
            value=c.control.value,
            at=codec.row_json(c.events[0].at) if c.events else None,
            note=c.control.note,
        )
    pos = c.position
    if pos is None:
        return values
    values.update(zip(codec.POSITION_COLUMNS, codec.position_params(pos), strict=True))
    values["expected"] = c.expected_version
    values["orders"] = codec.dumps(
        [
            {name: codec.row_json(getattr(o, name)) if name != "ord" else i for name in _O_NAMES}
            for i, o in orders
        ]
    )
    return values
