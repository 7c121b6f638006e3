"""Helpers for tests against a real PostgreSQL, shared by every test folder and by bench/.

The server: the DSN in the environment variable ``PS_TEST_DSN`` (a role allowed to
``CREATE DATABASE``), else an embedded server (pgserver) on ``<repo>/.data/pgtest``, started
once per test session (:func:`admin_dsn`) and stopped at its end (:func:`shutdown`) unless
another process still uses it.

Isolation: :func:`fresh_database` gives each test a database of its own, cloned from a
template that already has the schema (``CREATE DATABASE … TEMPLATE``, ~40 ms), and drops it
afterwards; advisory locks are per database too, so tests cannot see each other's locks.

Outages: :func:`private_server` runs a second embedded server on a folder of this process
(``<repo>/.data/pgo<pid>``) that a test may stop and start without disturbing anybody else
(another pytest run may share ``.data/pgtest``). :func:`frozen` stops its processes
(SIGSTOP: alive, holding their sockets, answering nothing) and resumes them (SIGCONT) on
leaving, whatever happens; the private server's teardown resumes them too.

No helper sleeps as synchronisation: :func:`wait_until` polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from infra.store.embedded import EmbeddedPostgres
from infra.store.migrations import MIGRATIONS, migrate
from testkit.waiting import poll

__all__ = [
    "ENV_DSN",
    "PRIVATE_PREFIX",
    "SHARED_DIR",
    "admin_dsn",
    "backend_pids",
    "create_database",
    "drop_database",
    "fresh_database",
    "frozen",
    "new_threads",
    "private_server",
    "server_processes",
    "shutdown",
    "template_database",
    "terminate_backend",
    "wait_until",
    "with_dbname",
]

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".data"
SHARED_DIR = DATA / "pgtest"
PRIVATE_PREFIX = "pgo"
ENV_DSN = "PS_TEST_DSN"

_DB_PREFIX = "pst_"
_lock = threading.Lock()
_server: EmbeddedPostgres | None = None
_admin: str | None = None
_templates: dict[str, str] = {}


# --- polling ----------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> None:
    """Poll ``condition`` until it is truthy; AssertionError after ``timeout`` seconds."""
    poll(condition, timeout, message, interval)


def new_threads(before: set[int], timeout: float = 5.0) -> list[threading.Thread]:
    """Threads started since ``before`` (thread idents) still alive after ``timeout`` s of
    polling (daemon threads included; pytest-timeout's own excluded)."""

    def extra() -> list[threading.Thread]:
        return [
            t
            for t in threading.enumerate()
            if t.ident not in before and t.is_alive() and "pytest_timeout" not in t.name
        ]

    deadline = time.monotonic() + timeout
    while (left := extra()) and time.monotonic() < deadline:
        left[0].join(timeout=max(0.0, min(0.1, deadline - time.monotonic())))
    return extra()


# --- the shared server --------------------------------------------------------------------


def admin_dsn() -> str:
    """DSN of the test server's maintenance database (``PS_TEST_DSN`` or embedded).
    Starts the embedded server on first call (once per process)."""
    global _server, _admin
    with _lock:
        if _admin is not None:
            return _admin
        env = os.environ.get(ENV_DSN, "").strip()
        if env:
            _admin = env
        else:
            DATA.mkdir(parents=True, exist_ok=True)
            _server = EmbeddedPostgres(SHARED_DIR, cleanup="stop")
            _admin = _server.start()
            _reap_databases(_admin)
        return _admin


def shutdown() -> None:
    """Stop the embedded server started by :func:`admin_dsn` (if this process is its last
    user). Idempotent."""
    global _server, _admin
    with _lock:
        server, _server, _admin = _server, None, None
        _templates.clear()
    if server is not None:
        server.close()


def with_dbname(dsn: str, dbname: str) -> str:
    """``dsn`` pointing at database ``dbname``."""
    return make_conninfo(dsn, dbname=dbname)


def _retry_in_use(action: Callable[[], object], timeout: float = 10.0) -> None:
    """Run ``action``, retrying while PostgreSQL says a database is in use (a backend that
    just disconnected may take a moment to exit)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            action()
            return
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise
            threading.Event().wait(0.02)


def create_database(admin: str, name: str, template: str | None = None) -> str:
    """Create database ``name`` (from ``template`` if given); return its DSN."""
    with psycopg.connect(admin, autocommit=True) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
        _retry_in_use(lambda: conn.execute(stmt))
    return with_dbname(admin, name)


def drop_database(admin: str, name: str) -> None:
    """Drop database ``name`` if it exists, ending its remaining sessions."""
    with psycopg.connect(admin, autocommit=True) as conn:
        stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        conn.execute(stmt)


def template_database(admin: str) -> str:
    """Name of a database holding the current schema, to clone. Built once per schema version
    (its name carries the migrations' checksum) by whichever process gets there first."""
    digest = hashlib.sha256("".join(m.checksum for m in MIGRATIONS).encode()).hexdigest()[:12]
    name = f"ps_tpl_{digest}"
    with _lock:
        if _templates.get(admin) == name:
            return name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('position-supervisor/test-template'))")
        try:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                tmp = f"{name}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
                create_database(admin, tmp)
                try:
                    migrate(with_dbname(admin, tmp))
                    rename = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(tmp), sql.Identifier(name)
                    )
                    _retry_in_use(lambda: conn.execute(rename))
                except BaseException:
                    drop_database(admin, tmp)
                    raise
                conn.execute(
                    sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                        sql.Identifier(name)
                    )
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('position-supervisor/test-template'))")
    with _lock:
        _templates[admin] = name
    return name


@contextlib.contextmanager
def fresh_database(admin: str, *, migrated: bool = True) -> Iterator[str]:
    """A new database for one test (with the schema unless ``migrated=False``); yields its
    DSN and drops it afterwards (ending any session the test left open)."""
    name = f"{_DB_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:12]}"
    template = template_database(admin) if migrated else "template0"
    dsn = create_database(admin, name, template)
    try:
        yield dsn
    finally:
        drop_database(admin, name)


def _reap_databases(admin: str) -> None:
    """Drop test databases left by test processes that died (their pid is in the name).
    Only for the embedded server: on a server named by ``PS_TEST_DSN`` pids mean nothing."""
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (_DB_PREFIX + "%",)
        ).fetchall()
    for (name,) in rows:
        pid_text = str(name)[len(_DB_PREFIX) :].split("_", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _alive(int(pid_text)):
            with contextlib.suppress(psycopg.Error):
                drop_database(admin, str(name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


# --- sessions ---------------------------------------------------------------------------


def backend_pids(dsn: str, application_name: str | None = None) -> list[int]:
    """Server pids of the other sessions on ``dsn``'s database (optionally by application)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        q = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        params: tuple[object, ...] = ()
        if application_name is not None:
            q += " AND application_name = %s"
            params = (application_name,)
        return [int(r[0]) for r in conn.execute(q, params).fetchall()]


def terminate_backend(dsn: str, pid: int) -> bool:
    """``pg_terminate_backend(pid)`` from a connection of its own; True when signalled."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        return bool(row and row[0])


# --- a server of this process, to stop and start ----------------------------------------


@contextlib.contextmanager
def private_server(prefix: str = PRIVATE_PREFIX) -> Iterator[EmbeddedPostgres]:
    """An embedded server on ``.data/<prefix><pid>`` for this process only; deleted afterwards.
    Leftovers of dead processes (same prefix, a pid that no longer runs) are removed first.
    ``prefix`` keeps two users of one process apart (``bench.failover`` uses ``pgf``, tests
    the default ``pgo``)."""
    _reap_private_servers(prefix)
    DATA.mkdir(parents=True, exist_ok=True)
    server = EmbeddedPostgres(DATA / f"{prefix}{os.getpid()}", cleanup="delete")
    server.start()
    try:
        yield server
    finally:
        _resume(server_processes(server))  # a test may have left it frozen
        server.start()  # a test may have left it stopped: "delete" stops it properly
        server.close()


# --- freezing a server (its processes stopped, not dead) ---------------------------------


def server_processes(server: EmbeddedPostgres) -> list[int]:
    """The postmaster of ``server`` (first line of its ``postmaster.pid``) and its children
    (found in ``/proc``); empty when it is not running. Linux only."""
    try:
        postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    if not _alive(postmaster):
        return []
    found = [postmaster]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(postmaster):
            found.append(int(entry.name))
    return found


def _resume(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def frozen(server: EmbeddedPostgres) -> Iterator[list[int]]:
    """Stop every process of ``server`` (SIGSTOP: the postmaster first, so that it forks no
    new backend, then its children) for the block; yields their pids. On leaving, even by
    an exception, every one of them (and any child found then) gets SIGCONT. Use it on a
    :func:`private_server` only: everybody using the server waits."""
    pids = server_processes(server)
    if not pids:
        raise AssertionError(f"no PostgreSQL running in {server.data_dir}")
    stopped: list[int] = []
    try:
        os.kill(pids[0], signal.SIGSTOP)
        stopped.append(pids[0])
        for pid in server_processes(server)[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield list(stopped)
    finally:
        _resume(stopped[1:] + stopped[:1])
        _resume(server_processes(server))


def _reap_private_servers(prefix: str) -> None:
    if not DATA.exists():
        return
    for path in DATA.glob(f"{prefix}*"):
        pid_text = path.name[len(prefix) :]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        if _alive(int(pid_text)):
            continue  # its process is alive: not ours to touch
        with contextlib.suppress(Exception):
            EmbeddedPostgres(path).stop(mode="immediate")
        shutil.rmtree(path, ignore_errors=True)
