"""The secrets policy: secrets come from the environment, never from the file, and every
secret resolved is known for log redaction.

* :func:`refuse_file_secrets`: a key that looks like a secret (``api_key``, ``secret``,
  ``token``, ``password`` …) anywhere in the document is an error;
* :func:`refuse_url_secrets`: a URL carrying user info or a secret-looking query parameter;
* :func:`refuse_dsn_password`: a DSN carrying a password in any form libpq accepts
  (``user:pw@``, ``?password=``, ``password=``, also ``sslpassword``);
* :func:`read_credentials`: an account's key pair from ``PS_<ACCOUNT>_API_KEY`` /
  ``PS_<ACCOUNT>_API_SECRET`` (:func:`env_name`), or the one fake pair
  (:data:`DUMMY_API_KEY`, :data:`DUMMY_API_SECRET`) where none is required. The configuration
  loader and the exchange venues' configuration (:mod:`infra.exchange.venues`) both use it;
* :func:`check_control_token`: the control endpoint's token is long enough to guard it;
* :func:`dsn_secrets`: every spelling of a DSN's passwords, for redaction.

Pure functions (reading only the mapping given as the environment); any thread. Failures are
:class:`~infra.config.ConfigError` whose message never quotes a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from infra.config.table import ConfigError

__all__ = [
    "DUMMY_API_KEY",
    "DUMMY_API_SECRET",
    "MIN_CONTROL_TOKEN",
    "check_control_token",
    "dsn_secrets",
    "env_name",
    "env_prefix",
    "parse_dsn",
    "read_credentials",
    "refuse_dsn_password",
    "refuse_file_secrets",
    "refuse_url_secrets",
]

#: The fake key pair of an account that needs none (``credentials = "dummy"`` against sim/,
#: or a venue configured with ``require_credentials=False``).
DUMMY_API_KEY = "sim-dummy-key"
DUMMY_API_SECRET = "sim-dummy-secret"

#: The shortest control token accepted (a guessable token guards an endpoint that closes
#: positions).
MIN_CONTROL_TOKEN = 16

_SECRET_WORDS = ("secret", "password", "passwd", "token", "api_key", "apikey", "private_key")
# Connection options whose value is a secret (libpq's keywords; ``passfile`` is a path: fine).
_DSN_SECRET_KEYS = ("password", "sslpassword")
# URL query parameters that carry a secret: their names, lower-cased, without ``-``/``_``/``.``.
_URL_SECRET_RE = re.compile(
    r"token|secret|passw|pwd|auth|apikey|key$|^key|signature|^sig$|jwt|credential|session|bearer"
)


def env_prefix(account: str) -> str:
    """``PS_<ACCOUNT>``: the account upper-cased, anything but ``[A-Z0-9]`` as ``_``."""
    return "PS_" + re.sub(r"[^A-Z0-9]", "_", account.upper())


def env_name(account: str, what: str) -> str:
    """``PS_<ACCOUNT>_<WHAT>``: the environment variable holding an account's secret."""
    return f"{env_prefix(account)}_{what}"


def read_credentials(
    key_env: str,
    secret_env: str,
    environ: Mapping[str, str],
    *,
    where: str,
    required: bool = True,
) -> tuple[str, str]:
    """``(api key, api secret)`` from the variables ``key_env`` and ``secret_env``.

    When either is missing or empty: :class:`ConfigError` ``where: credentials missing: set
    the environment variable <name>`` if ``required``, else the dummy pair."""
    key = environ.get(key_env, "")
    secret = environ.get(secret_env, "")
    if key and secret:
        return key, secret
    if required:
        missing = key_env if not key else secret_env
        raise ConfigError(where, f"credentials missing: set the environment variable {missing}")
    return DUMMY_API_KEY, DUMMY_API_SECRET


def check_control_token(token: str, token_env: str, where: str) -> None:
    """Refuse a control token shorter than :data:`MIN_CONTROL_TOKEN` or with characters
    other than printable ASCII without spaces."""
    if (
        len(token) < MIN_CONTROL_TOKEN
        or not token.isascii()
        or not token.isprintable()
        or any(c.isspace() for c in token)
    ):
        raise ConfigError(
            where,
            f"{token_env} must be at least {MIN_CONTROL_TOKEN} printable ASCII characters "
            "without spaces (e.g. the output of `openssl rand -hex 32`)",
        )


def refuse_file_secrets(data: Mapping[str, Any]) -> None:
    """Refuse secret-looking keys anywhere in the document (tables, arrays of tables).

    Iterative, so that a document nested thousands of levels deep by dotted keys (which
    ``tomllib`` builds without recursion) is refused later as an unknown key, not by a
    RecursionError here."""
    stack: list[tuple[str, object]] = [("", data)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, list):
            stack += [(f"{path}[{i}]", v) for i, v in enumerate(node)]
            continue
        if not isinstance(node, Mapping):
            continue
        for k, v in node.items():
            here = f"{path}.{k}" if path else str(k)
            low = str(k).lower()
            if isinstance(v, Mapping | list):
                stack.append((here, v))
            elif not low.endswith("_env") and any(w in low for w in _SECRET_WORDS):
                raise ConfigError(here, "secrets come from the environment, not the file")


def refuse_url_secrets(where: str, parts: SplitResult) -> None:
    """Refuse a URL with user info, or a query or fragment parameter named like a token,
    key or password."""
    if parts.username or parts.password:
        raise ConfigError(where, "must not carry credentials; secrets come from the environment")
    for part, text in (("query", parts.query), ("fragment", parts.fragment)):
        for item in re.split(r"[&;]", text):
            name = re.sub(r"[-_.]", "", unquote(item.partition("=")[0])).lower()
            if name and _URL_SECRET_RE.search(name):
                raise ConfigError(
                    where,
                    f"must not carry a secret in its {part} (a parameter named like a "
                    "token, key or password); secrets come from the environment",
                )


def parse_dsn(dsn: str, where: str, problem: str) -> dict[str, Any]:
    """``dsn``'s options as libpq reads them (``conninfo_to_dict``: URI and key=value forms).

    Raises :class:`ConfigError` ``where: problem (detail)``; the detail is libpq's message
    with every quoted part of the DSN left out, since it could be a piece of a password."""
    if "\x00" in dsn:
        raise ConfigError(where, f"{problem} (it contains a NUL character)")
    try:
        return conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        lines = str(exc).strip().splitlines()
        detail = re.sub(r'"[^"]*"', '"…"', lines[0]) if lines else ""
        raise ConfigError(where, f"{problem} ({detail or type(exc).__name__})") from None


def refuse_dsn_password(dsn: str, where: str, dsn_env: str) -> None:
    """Refuse a DSN written in the file that is unparsable or carries a password."""
    params = parse_dsn(dsn, where, "not a valid PostgreSQL connection string")
    written = [k for k in _DSN_SECRET_KEYS if k in params] or (
        ["password"] if _written_dsn_secrets(dsn) else []
    )
    if written:
        raise ConfigError(
            where,
            f"contains a password{'' if written[0] == 'password' else f' ({written[0]})'}; "
            f"secrets come from the environment (set {dsn_env}, or use a passfile)",
        )


def dsn_secrets(dsn: str) -> tuple[str, ...]:
    """Every spelling of the passwords a DSN carries (``password``, ``sslpassword``): the value
    libpq uses and the text as written (percent-encoded in a URI, backslash-escaped or quoted
    in ``key=value``), so that a log line quoting the DSN or the value is redacted either way.
    Never raises; an unparsable DSN yields what a scan of its text finds."""
    out: list[str] = []
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        params = {}
    out += [str(params[k]) for k in _DSN_SECRET_KEYS if params.get(k)]
    out += _written_dsn_secrets(dsn)
    return tuple(dict.fromkeys(s for s in out if s))


def _written_dsn_secrets(dsn: str) -> list[str]:
    """Values of password options as written in ``dsn`` and decoded, following libpq's
    grammar (``fe-connect.c``: ``conninfo_uri_parse_options``, ``conninfo_parse``)."""
    out: list[str] = []
    if dsn.startswith(("postgresql://", "postgres://")):
        rest = dsn.split("://", 1)[1]
        at = rest.find("@")
        slash = rest.find("/")
        if at >= 0 and (slash < 0 or at < slash):
            user_info, rest = rest[:at], rest[at + 1 :]
            if ":" in user_info:
                raw = user_info.split(":", 1)[1]
                out += [raw, unquote(raw)]
        if "?" in rest:
            for item in rest.split("?", 1)[1].split("&"):
                k, eq, v = item.partition("=")
                if eq and unquote(k) in _DSN_SECRET_KEYS:
                    out += [v, unquote(v)]
        return [s for s in out if s]
    i, n = 0, len(dsn)
    while i < n:
        while i < n and dsn[i].isspace():
            i += 1
        start = i
        while i < n and dsn[i] != "=" and not dsn[i].isspace():
            i += 1
        key = dsn[start:i]
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n or dsn[i] != "=":
            break  # malformed: libpq refuses it as well
        i += 1
        while i < n and dsn[i].isspace():
            i += 1
        quoted = i < n and dsn[i] == "'"
        i += quoted
        start, value = i, []
        while i < n and (dsn[i] != "'" if quoted else not dsn[i].isspace()):
            if dsn[i] == "\\" and i + 1 < n:
                i += 1
            value.append(dsn[i])
            i += 1
        raw = dsn[start:i]
        i += quoted
        if key in _DSN_SECRET_KEYS:
            out += [raw, "".join(value)]
    return [s for s in out if s]
