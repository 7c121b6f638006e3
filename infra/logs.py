"""Structured logging: one line per record, optional JSON lines, secrets redacted.

:func:`setup_logging` installs one handler on the root logger (stderr by default, which is what
supervisord captures). Every record passes two filters on that handler:

* :class:`ContextFilter` turns the ``extra={"key": "account:symbol", "position_id": n}`` the
  actors log with into ``account``, ``symbol`` and ``position_id`` fields, so that every line
  about a position names all three (``-`` where unknown);
* :class:`SecretRedactor` replaces every configured secret value by ``***`` in the message, its
  arguments, string extras, the exception text and the stack text; the formatters redact the
  final line once more, so a secret cannot reach the output by any path through this handler.

Text lines look like ``2024-05-01T12:00:00.123Z INFO actors.position_actor [main BTCUSDT #17]
position 17 pending_entry -> entry_placed``; JSON lines carry ``ts``, ``level``, ``logger``,
``msg``, ``account``, ``symbol``, ``position_id``, ``thread`` and ``exc`` when there is one.

For a run outside supervisord, ``setup_logging(file=...)`` writes to a file rotated by size
(:class:`logging.handlers.RotatingFileHandler`: ``file`` grows to ``max_bytes``, then becomes
``file.1``, ``file.1`` becomes ``file.2``, up to ``backups`` files), so weeks of logs take at
most ``(backups + 1) * max_bytes``. Configured by ``[logging] file``, ``max_bytes``, ``backups``.

:class:`LogThrottle` bounds what one cause may log: the feeds use it for lines that a flood of
bad frames would otherwise repeat thousands of times a second.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "LogThrottle",
    "LogWindows",
    "SecretRedactor",
    "TextFormatter",
    "setup_logging",
]

REDACTED = "***"
_MIN_SECRET = 4
_HANDLER_NAME = "position-supervisor"
_STD_ATTRS = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "account",
    "symbol",
    "position_id",
    "key",
}


class SecretRedactor(logging.Filter):
    """Redacts secret values from records. Add secrets later with :meth:`add` (thread-safe)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Add secret values; values shorter than 4 characters are ignored (they would garble
        every line and cannot be told apart from ordinary text)."""
        with self._lock:
            merged = set(self._secrets) | {s for s in secrets if s and len(s) >= _MIN_SECRET}
            # Longest first, so that a secret containing another is redacted whole.
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can
            message = f"{record.msg!r} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for k, v in list(vars(record).items()):
            if k not in _STD_ATTRS and isinstance(v, str):
                setattr(record, k, self.redact(v))
        return True


class ContextFilter(logging.Filter):
    """Sets ``record.account``, ``record.symbol``, ``record.position_id`` (``-`` if unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        key: object = getattr(record, "key", None)
        account = getattr(record, "account", None)
        symbol = getattr(record, "symbol", None)
        if isinstance(key, str) and ":" in key:
            a, _, s = key.partition(":")
            account = account or a
            symbol = symbol or s
        elif key is not None and hasattr(key, "account"):
            account = account or getattr(key, "account", None)
            symbol = symbol or getattr(key, "symbol", None)
        record.account = account or "-"
        record.symbol = symbol or "-"
        pid = getattr(record, "position_id", None)
        record.position_id = "-" if pid is None else pid
        return True


class LogWindows:
    """At most ``burst`` lines per kind per ``interval_s``; the rest are counted, not written.

    The one rule behind every throttled log line: the bounded HTTP server's notes and
    failed answers, the control endpoint's refusals (``burst=1``) and the feeds'
    :class:`LogThrottle`. Thread-safe; never raises; keeps at most ``max_kinds`` kinds (it
    forgets them all beyond, so a flood of distinct kinds cannot grow it).
    """

    def __init__(
        self,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        burst: int = 1,
        max_kinds: int = 1000,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._burst = burst
        self._max_kinds = max_kinds
        self._windows: dict[str, list[float]] = {}  # kind -> [window start, lines, held back]
        self._lock = threading.Lock()

    def admit(self, kind: str) -> int | None:
        """``None`` when ``kind`` used up its ``burst`` in the current window (this line is
        held back and counted); else the number held back in the window that closed before
        this one (0 within a window)."""
        now = self._clock()
        with self._lock:
            w = self._windows.get(kind)
            held = 0
            if w is None or now - w[0] >= self.interval_s:
                held = int(w[2]) if w is not None else 0
                w = [now, 0.0, 0.0]
                if len(self._windows) >= self._max_kinds:
                    self._windows = {}
                self._windows[kind] = w
            w[1] += 1
            if w[1] > self._burst:
                w[2] += 1
                return None
        return held


class LogThrottle:
    """At most ``burst`` lines per key per ``interval_s``; then one summary of what it dropped.

    For log lines that a flood of bad frames would repeat thousands of times a second. The
    summary (``N more like 'key' suppressed …``) is written when the key's next window opens.
    Called from one thread (a feed's), but safe from several. Never raises beyond what the
    logger raises; keeps at most about 1,000 keys (:class:`LogWindows`).
    """

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 10,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._windows = LogWindows(interval_s, clock, burst=burst)

    def warning(self, key: str, msg: str, *args: object) -> None:
        """Log ``msg % args`` at WARNING unless ``key`` used up its burst in this window."""
        held = self._windows.admit(key)
        if held:
            self._log.warning(
                "%d more like %r suppressed in the last %.0fs",
                held,
                key,
                self._windows.interval_s,
            )
        if held is not None:
            self._log.warning(msg, *args)


def _iso(created: float) -> str:
    t = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(created % 1 * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger> [<account> <symbol> #<position id>] <message>``."""

    def __init__(self, redactor: SecretRedactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        ctx = ""
        account = getattr(record, "account", "-")
        symbol = getattr(record, "symbol", "-")
        pid = getattr(record, "position_id", "-")
        if account != "-" or pid != "-":
            ctx = f" [{account} {symbol} #{pid}]"
        line = f"{_iso(record.created)} {record.levelname} {record.name}{ctx} {record.getMessage()}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return self._redactor.redact(line) if self._redactor else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields given with ``extra=`` are carried along."""

    def __init__(self, redactor: SecretRedactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "account": getattr(record, "account", "-"),
            "symbol": getattr(record, "symbol", "-"),
            "position_id": getattr(record, "position_id", "-"),
            "thread": record.threadName,
        }
        for k, v in vars(record).items():
            if k not in _STD_ATTRS and k not in doc:
                doc[k] = v if isinstance(v, str | int | float | bool) or v is None else repr(v)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        line = json.dumps(doc, ensure_ascii=False, default=repr)
        return self._redactor.redact(line) if self._redactor else line


def setup_logging(
    level: str | int = "INFO",
    json_lines: bool = False,
    secrets: Iterable[str] = (),
    stream: IO[str] | None = None,
    *,
    file: str | None = None,
    max_bytes: int = 100 * 1024 * 1024,
    backups: int = 10,
) -> SecretRedactor:
    """Configure the root logger: one handler, context and redaction filters, one format.

    The handler writes to ``stream`` (default stderr) or, with ``file``, to that file rotated
    by size (``max_bytes`` > 0, ``backups`` >= 1 kept; see the module docstring). Called once
    by the CLI on the main thread before anything starts. Raises ``OSError`` when ``file``
    cannot be opened for appending (nothing is changed then).

    Replaces a handler installed by an earlier call (idempotent); leaves other handlers (e.g.
    pytest's capture) alone but adds the redactor to them too, so that no handler attached to
    the root logger writes a secret. Also routes ``warnings`` and uncaught thread exceptions
    to the log. Returns the redactor, to add secrets learnt later.
    """
    if file is not None and (max_bytes <= 0 or backups < 1):
        raise ValueError("a rotated log file needs max_bytes > 0 and backups >= 1")
    handler: logging.Handler
    if file is not None:
        handler = logging.handlers.RotatingFileHandler(
            file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    redactor = SecretRedactor(secrets)
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
            h.close()
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.addFilter(redactor)
    handler.setFormatter(JsonFormatter(redactor) if json_lines else TextFormatter(redactor))
    for h in root.handlers:
        for f in list(h.filters):
            if isinstance(f, SecretRedactor):
                h.removeFilter(f)
        h.addFilter(redactor)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    logging.captureWarnings(True)
    # Chatty libraries stay at WARNING unless DEBUG is asked for.
    if root.level > logging.DEBUG:
        for name in ("urllib3", "websocket", "ccxt", "psycopg.pool"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        logging.getLogger("thread").error(
            "uncaught exception in thread %s",
            args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
        )

    threading.excepthook = thread_hook
    return redactor
