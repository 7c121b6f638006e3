"""(De)serialisation of the actor value types for PostgreSQL: rows (``_rows``: positions,
orders, signals, journal events as columns) and JSON (``_json``: messages and details as
``jsonb``). Pure functions, no I/O, safe from any thread. Import from the package
(``from infra.store import codec``; ``codec.position_params`` ...).
"""

from infra.store.codec._json import (
    JSON,
    MESSAGE_TYPES,
    CodecError,
    decode_message,
    dumps,
    encode_detail,
    encode_message,
    row_json,
    to_json,
)
from infra.store.codec._rows import (
    NON_TERMINAL_SQL,
    ORDER_COLUMNS,
    POSITION_COLUMN_TYPES,
    POSITION_COLUMNS,
    event_from_row,
    order_from_row,
    order_params,
    position_from_row,
    position_params,
    signal_from_row,
    signal_params,
)

__all__ = [
    "JSON",
    "MESSAGE_TYPES",
    "NON_TERMINAL_SQL",
    "ORDER_COLUMNS",
    "POSITION_COLUMNS",
    "POSITION_COLUMN_TYPES",
    "CodecError",
    "decode_message",
    "dumps",
    "encode_detail",
    "encode_message",
    "event_from_row",
    "order_from_row",
    "order_params",
    "position_from_row",
    "position_params",
    "row_json",
    "signal_from_row",
    "signal_params",
    "to_json",
]
