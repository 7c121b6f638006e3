"""Our orders' identity: deterministic client order ids, the installation they carry, and
the one way a new order of a position is made (:func:`intended_order`).

Pure values and functions, any thread. Also importable from :mod:`actors.state` (where
they lived), which re-exports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from actors.model import OrderKind, OrderRecord, OrderState

__all__ = [
    "INSTALLATION_MODULUS",
    "Installation",
    "client_order_id",
    "intended_order",
    "parse_client_id",
]


_KIND_OF_LETTER = {k.letter: k for k in OrderKind}
#: Ours: ``ps<position id><letter of a kind we place><seq>``; any other letter is not ours.
_CLIENT_ID = re.compile(rf"^ps([0-9]+)([{''.join(_KIND_OF_LETTER)}])([0-9]+)$")


def parse_client_id(client_id: str) -> tuple[int, OrderKind, int] | None:
    """``(position id, kind, seq)`` of one of our client order ids, ``None`` for any other id
    (orders of other software on the account are never touched)."""
    m = _CLIENT_ID.match(client_id)
    if m is None:
        return None
    return int(m.group(1)), _KIND_OF_LETTER[m.group(2)], int(m.group(3))


def client_order_id(position_id: int, kind: OrderKind, seq: int) -> str:
    """Deterministic client order id (I2): ``ps<position id><kind letter><seq>``.

    Derived from durable fields only, so after any crash the order can be looked up on the
    exchange by this id. At most 36 characters of ``[a-z0-9]`` as Binance requires (a
    position id has at most 19 digits). The installation id is part of the position id
    (:class:`Installation`): the format is the same with or without one.
    """
    return f"ps{position_id}{kind.letter}{seq}"


INSTALLATION_MODULUS = 1_000_000
"""A database allocates position ids in steps of this, all ending in its installation id
(``infra.store.migrations``, version 3)."""


def intended_order(
    position_id: int,
    kind: OrderKind,
    seq: int,
    side: str,
    qty: float,
    at: float,
    trigger_price: float | None = None,
) -> OrderRecord:
    """A new order of a position, decided at ``at`` and not yet sent (state ``INTENDED``,
    first attempt): the ``seq``-th of its ``kind``, with its deterministic client id."""
    return OrderRecord(
        client_id=client_order_id(position_id, kind, seq),
        kind=kind,
        side=side,
        qty=qty,
        state=OrderState.INTENDED,
        trigger_price=trigger_price,
        sent_at=at,
        attempts=1,
    )


@dataclass(frozen=True, slots=True)
class Installation:
    """Which orders with our prefix are this database's (I7: one installation per account).

    ``id``: the installation id, six digits drawn when the database was created (migration
    version 3); every position id allocated since ends in it (``id % INSTALLATION_MODULUS``),
    so every client order id ``ps<position id>…`` carries it. ``legacy_below``: position ids
    below it were allocated before the installation had an id; their orders count as ours
    (as they always did). Unit tests and the in-memory fakes run without an installation
    (``Policy.installation`` is ``None``): every ``ps…`` order is then ours.
    """

    id: int
    legacy_below: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.id < INSTALLATION_MODULUS:
            raise ValueError(f"installation id {self.id} is not six digits")

    @property
    def label(self) -> str:
        """The id as written in a position id's last six digits."""
        return f"{self.id:06d}"

    def foreign(self, client_id: str) -> int | None:
        """The installation id of ``client_id`` when it is an order of ours in format but of
        *another* installation (another database); ``None`` for our own orders (legacy ones
        included) and for orders that are not ours in format (other software)."""
        parsed = parse_client_id(client_id)
        if parsed is None or parsed[0] < self.legacy_below:
            return None
        other = parsed[0] % INSTALLATION_MODULUS
        return None if other == self.id else other

    def owns(self, client_id: str) -> bool:
        """True for an order of ours: our format, and this installation's (or legacy)."""
        return parse_client_id(client_id) is not None and self.foreign(client_id) is None
