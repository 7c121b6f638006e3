"""An embedded PostgreSQL 16 (the ``pgserver`` wheel) for the demo and the tests.

:class:`EmbeddedPostgres` runs a server on a data folder, listening on a Unix socket in that
folder only. Keep the folder's path short (the socket path is limited to 107 bytes) and
dedicated (run as root, pgserver starts the server as the system user ``pgserver``, creating
it if missing, and opens read/execute permission on the folder's parents).

Several processes may use the same folder: pgserver counts the processes that opened it and
the last one to :meth:`EmbeddedPostgres.close` stops the server (``cleanup="stop"``).
:meth:`EmbeddedPostgres.stop` and :meth:`EmbeddedPostgres.start` stop and start the server
unconditionally, for everybody (outage tests): use them on a folder of your own.

All methods block the calling thread (a start takes about a second, more on first use when
the data folder is initialised); errors of ``pg_ctl`` surface as
:class:`EmbeddedPostgresError` with the tail of the server log.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "resolve_dsn", "shutdown_embedded"]

log = logging.getLogger(__name__)

# pgserver logs every command it runs at INFO; keep its warnings only.
logging.getLogger("pgserver").setLevel(logging.WARNING)

Cleanup = Literal["stop", "delete", "keep"]

# pgserver shares one server object per folder within a process: count our handles on it so
# that closing one EmbeddedPostgres does not stop the server under another.
_HANDLES: dict[Path, int] = {}
_HANDLES_LOCK = threading.Lock()


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started or stopped."""


def _pgserver() -> ModuleType:
    # pgserver warns at import when XDG_RUNTIME_DIR is unset (it falls back to /tmp/runtime-<uid>).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("pgserver")


class EmbeddedPostgres:
    """One embedded server on ``data_dir``. Context manager: ``start()`` on enter, ``close()``
    on exit.

    ``cleanup``: what :meth:`close` does when this process is the server's last user:
    ``"stop"`` the server (default), ``"delete"`` it and its data folder, or ``"keep"`` it
    running. Thread-safe (one internal lock); not meant to be shared between processes
    except through the data folder.
    """

    def __init__(self, data_dir: str | Path, *, cleanup: Cleanup = "stop") -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.cleanup: Cleanup = cleanup
        self._server: Any = None
        self._lock = threading.RLock()

    # -- lifecycle

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> str:
        """Start the server (initialising the folder on first use), or, after :meth:`stop`,
        start it again on the same folder and socket. Returns :attr:`dsn`. Idempotent."""
        with self._lock:
            pgs = _pgserver()
            if self._server is None:
                self.data_dir.parent.mkdir(parents=True, exist_ok=True)
                _prune_dead_handles(self.data_dir)
                mode = None if self.cleanup == "keep" else self.cleanup
                try:
                    server = pgs.get_server(self.data_dir, cleanup_mode=mode)
                except (subprocess.SubprocessError, OSError, AssertionError) as exc:
                    raise EmbeddedPostgresError(
                        f"cannot start PostgreSQL in {self.data_dir}: {exc}{self._log_tail()}"
                    ) from exc
                with _HANDLES_LOCK:
                    _HANDLES[self.data_dir] = _HANDLES.get(self.data_dir, 0) + 1
                self._server = server
                if not self.running:
                    self.start()  # the folder was known to this process but stopped
                log.info("embedded PostgreSQL running in %s", self.data_dir)
            elif not self.running:
                try:
                    with pgs.PostgresServer._lock:
                        self._server.ensure_postgres_running()
                except (subprocess.SubprocessError, OSError, AssertionError) as exc:
                    raise EmbeddedPostgresError(
                        f"cannot restart PostgreSQL in {self.data_dir}: {exc}{self._log_tail()}"
                    ) from exc
                log.info("embedded PostgreSQL restarted in %s", self.data_dir)
            return self.dsn

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast", timeout: int = 30) -> None:
        """Stop the server now, for every process using it (``pg_ctl stop``; ``fast``
        disconnects clients, ``immediate`` simulates a crash). :meth:`start` brings it back.
        No-op when it is not running. Works on a folder this object did not start (a server
        left over by a dead process)."""
        with self._lock:
            if not self.running:
                return
            pgs = _pgserver()
            pg_ctl = Path(pgs.postgres_server.POSTGRES_BIN_PATH) / "pg_ctl"
            cmd = [str(pg_ctl), "-D", str(self.data_dir), "-w", "-t", str(timeout), "-m", mode]
            try:
                subprocess.run(
                    [*cmd, "stop"],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    timeout=timeout + 5,
                    user=_system_user(),
                )
            except (subprocess.SubprocessError, OSError) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                raise EmbeddedPostgresError(
                    f"pg_ctl stop failed in {self.data_dir}: {exc} "
                    f"{detail.decode(errors='replace')}{self._log_tail()}"
                ) from exc
            log.info("embedded PostgreSQL stopped (%s) in %s", mode, self.data_dir)

    def close(self) -> None:
        """Release this process's use of the server; stop or delete it as ``cleanup`` says
        when no other process uses it. Idempotent."""
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            with _HANDLES_LOCK:
                left = _HANDLES.get(self.data_dir, 1) - 1
                if left > 0:
                    _HANDLES[self.data_dir] = left
                else:
                    _HANDLES.pop(self.data_dir, None)
            if left > 0:
                return  # another EmbeddedPostgres of this process still uses the server
            try:
                server._cleanup()
            except (subprocess.SubprocessError, OSError, KeyError) as exc:
                log.warning("embedded PostgreSQL cleanup in %s: %s", self.data_dir, exc)

    # -- facts

    @property
    def dsn(self) -> str:
        """A libpq URI for the ``postgres`` database over the server's Unix socket."""
        with self._lock:
            if self._server is None:
                raise EmbeddedPostgresError("embedded PostgreSQL is not started")
            return str(self._server.get_uri())

    def dsn_for(self, database: str) -> str:
        """Like :attr:`dsn`, for another database of the same server."""
        with self._lock:
            if self._server is None:
                raise EmbeddedPostgresError("embedded PostgreSQL is not started")
            return str(self._server.get_uri(database))

    @property
    def running(self) -> bool:
        """True when the postmaster of this folder is up and ready."""
        pgs = _pgserver()
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        try:
            info = pgs.utils.PostmasterInfo.read_from_pgdata(self.data_dir)
        except (OSError, ValueError, AssertionError):
            return False
        return bool(info is not None and info.is_running() and info.status == "ready")

    def _log_tail(self, lines: int = 20) -> str:
        path = self.data_dir / "log"
        try:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- server log ---\n" + "\n".join(tail)


def _system_user() -> str | None:
    """The system user pgserver runs the server as: ``pgserver`` when we are root."""
    return "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def _prune_dead_handles(data_dir: Path) -> None:
    """Forget processes that used the folder and died without closing it, so that the last
    live user still stops the server (pgserver keeps their pids in ``.handle_pids.json``)."""
    path = data_dir / ".handle_pids.json"
    if not path.exists():
        return
    pgs = _pgserver()
    with pgs.PostgresServer._lock:
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        alive = [p for p in pids if isinstance(p, int) and _pid_alive(p)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_EMBEDDED: dict[Path, EmbeddedPostgres] = {}
_EMBEDDED_LOCK = threading.Lock()


def resolve_dsn(dsn: str | None, data_dir: str | Path) -> str:
    """``dsn`` when one is given (non-empty), else the DSN of an embedded server on
    ``data_dir``, started on first call and kept for the life of the process (stopped at
    exit by pgserver when no other process uses it, or by :func:`shutdown_embedded`)."""
    if dsn:
        return dsn
    path = Path(data_dir).expanduser().absolute()
    with _EMBEDDED_LOCK:
        server = _EMBEDDED.get(path)
        if server is None:
            server = EmbeddedPostgres(path)
            _EMBEDDED[path] = server
        return server.start()


def shutdown_embedded() -> None:
    """Close every server :func:`resolve_dsn` started (see :meth:`EmbeddedPostgres.close`)."""
    with _EMBEDDED_LOCK:
        servers = list(_EMBEDDED.values())
        _EMBEDDED.clear()
    for server in servers:
        server.close()
