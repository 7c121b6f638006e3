"""The validator kit: :class:`ConfigError` and :class:`Table`, a TOML table being read.

Every key a section parser reads goes through :meth:`Table._get` (what
``tests/deploy/test_docs.py`` watches to compare the keys read with the documented ones).

Every problem is a :class:`ConfigError` whose message starts with the key path
(``accounts.main.rest_url: not a URL``). A :class:`Table` reads one key at a time, checks its
type and range, takes a key's default from the section's dataclass (:func:`defaults_of`:
the defaults are written once, in the schema) and refuses keys that were never read
(:meth:`Table.done`). Pure: no I/O; any thread.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

__all__ = ["ConfigError", "Table", "defaults_of", "is_loopback", "quote"]

_ENV_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_N = TypeVar("_N", int, float)


class ConfigError(ValueError):
    """Invalid configuration. ``str(err)`` is ``"<key path>: <problem>"`` (just the problem
    when the path is empty), always one line. Raised by the loader, the section parsers and
    the exchange venues' configuration (:mod:`infra.exchange.venues`); the CLI prints it and
    exits with code 2."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        text = f"{path}: {problem}" if path else problem
        super().__init__(" ".join(text.splitlines()))  # always one line


def defaults_of(schema: object) -> dict[str, Any]:
    """The default of each field: a dataclass instance's values, or a dataclass type's field
    defaults (fields without one are left out)."""
    assert is_dataclass(schema)
    if not isinstance(schema, type):
        return {f.name: getattr(schema, f.name) for f in fields(schema)}
    out: dict[str, Any] = {}
    for f in fields(schema):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def quote(value: str, limit: int = 40) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for a value quoted in an error."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


def is_loopback(url: str) -> bool:
    """True when ``url``'s host is ``localhost`` or a loopback address."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Table:
    """A TOML table being validated; remembers which keys were read to refuse unknown ones.

    ``defaults``: the section's dataclass (type or instance, :func:`defaults_of`); a reader
    called without ``default`` takes the key's default from there.
    """

    def __init__(self, data: object, path: str, defaults: object = None) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, "must be a table")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.defaults = defaults_of(defaults) if defaults is not None else {}
        self._seen: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def keys(self) -> list[str]:
        return list(self.data)

    def _get(self, key: str) -> Any:
        self._seen.add(key)
        return self.data.get(key)

    def _default(self, key: str, default: Any) -> Any:
        return self.defaults[key] if default is None else default

    def table(self, key: str, defaults: object = None) -> Table:
        v = self._get(key)
        return Table({} if v is None else v, self.at(key), defaults)

    def str_(self, key: str, default: str | None = None) -> str:
        v = self._get(key)
        if v is None:
            return str(self._default(key, default))
        if not isinstance(v, str):
            raise ConfigError(self.at(key), "must be a string")
        return v

    def opt_str(self, key: str) -> str | None:
        v = self._get(key)
        if v is not None and not isinstance(v, str):
            raise ConfigError(self.at(key), "must be a string")
        return v

    def str_list(self, key: str) -> list[str]:
        v = self._get(key)
        if v is None:
            raise ConfigError(self.at(key), "is required")
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(self.at(key), "must be a list of strings")
        return list(v)

    def bool_(self, key: str, default: bool | None = None) -> bool:
        v = self._get(key)
        if v is None:
            return bool(self._default(key, default))
        if not isinstance(v, bool):
            raise ConfigError(self.at(key), "must be true or false")
        return v

    def num(
        self,
        key: str,
        default: float | None = None,
        *,
        min_: float | None = None,
        max_: float | None = None,
        strict: bool = False,
    ) -> float:
        """A finite number; ``strict`` makes ``min_`` exclusive."""
        v = self._get(key)
        if v is None:
            return float(self._default(key, default))
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(self.at(key), "must be a finite number")
        return self._in_range(key, float(v), min_, max_, strict)

    def int_(
        self,
        key: str,
        default: int | None = None,
        *,
        min_: int | None = None,
        max_: int | None = None,
    ) -> int:
        v = self._get(key)
        if v is None:
            return int(self._default(key, default))
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(self.at(key), "must be an integer")
        return self._in_range(key, v, min_, max_)

    def _in_range(
        self,
        key: str,
        x: _N,
        min_: float | None,
        max_: float | None,
        strict: bool = False,
    ) -> _N:
        """``x`` if within ``min_`` (exclusive when ``strict``) and ``max_``, else the error."""
        if min_ is not None and (x <= min_ if strict else x < min_):
            raise ConfigError(self.at(key), f"must be {'above' if strict else 'at least'} {min_}")
        if max_ is not None and x > max_:
            raise ConfigError(self.at(key), f"must be at most {max_}")
        return x

    def opt_num(self, key: str, *, min_: float | None = None, strict: bool = False) -> float | None:
        """A number or, when absent, the default (which may be ``None``: no limit)."""
        if self._get(key) is None:
            return self.defaults.get(key)
        return self.num(key, min_=min_, strict=strict)

    def opt_int(self, key: str, *, min_: int | None = None) -> int | None:
        """An integer or, when absent, the default (which may be ``None``: no limit)."""
        if self._get(key) is None:
            return self.defaults.get(key)
        return self.int_(key, min_=min_)

    def env_name(self, key: str, default: str | None = None) -> str:
        v = self.str_(key, default)
        if not _ENV_RE.fullmatch(v):
            raise ConfigError(self.at(key), "not an environment variable name")
        return v

    def url(self, key: str, schemes: tuple[str, ...]) -> str:
        """A URL with one of ``schemes`` and a host, without a trailing ``/``; one carrying a
        secret is refused (:func:`~infra.config.refuse_url_secrets`)."""
        from infra.config.secrets_policy import refuse_url_secrets  # noqa: PLC0415 - a cycle

        v = self._get(key)
        if v is None:
            raise ConfigError(self.at(key), "is required")
        if not isinstance(v, str):
            raise ConfigError(self.at(key), "must be a string")
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ConfigError(self.at(key), "not a URL") from None
        if parts.scheme not in schemes or not parts.hostname:
            raise ConfigError(self.at(key), f"not a URL ({' or '.join(schemes)}://host...)")
        refuse_url_secrets(self.at(key), parts)
        return v.rstrip("/")

    def done(self) -> None:
        """Refuse keys that were never read (typos would otherwise be silently ignored)."""
        for k in self.data:
            if k not in self._seen:
                raise ConfigError(self.at(k), "unknown key")
