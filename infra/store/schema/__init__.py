"""The SQL of each released schema version, one module per version (``v1`` ... ``v6``), each
with its ``SQL`` and a docstring saying what the version makes; ``common`` holds what several
versions write the same way. Text only, no I/O: :mod:`infra.store.migrations` applies them.

CHECK constraints express value invariants: known enum values, quantities ``>= 0``, finite
prices and times (``abs(x) < 'Infinity'`` refuses NaN and ±Infinity), bounded identifiers.
"""

from infra.store.schema import v1, v2, v3, v4, v5, v6

__all__ = ["v1", "v2", "v3", "v4", "v5", "v6"]
