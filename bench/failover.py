"""Failover trial (I7): several supervisor processes on one PostgreSQL, accounts spread over
them by leases, and the faults a deployment meets; then count what must never happen.

What the trial runs:

* ``sim/`` with ``spec.accounts`` accounts (``acc1``…), each reached by one API key per
  process (``key-acc3-p2``: account 3 as process 2 reaches it), so the exchange's own logs
  say which process sent every order and every cancel;
* ``spec.processes`` supervisor processes (``p1``…) under supervisord (the program section of
  ``deploy/supervisord.conf``, as ``bench.chaos`` runs it), same configuration, each with
  ``max_accounts`` room and ``account_lock_wait = true``, on one PostgreSQL (a private
  embedded server the trial may restart);
* the sim's signal sources (overlapping bursts, replays, stops, take-profits, trailing
  stops) over every account, on the feed every process reads, and a random walk of the
  prices, so stops trail, take-profits and stops fill, positions open and close throughout.

Faults, in turn, each on an *owner* (a process that owns accounts) and each followed by a
wait until every account is owned again by a live process:

1. ``kill -9`` (supervisord restarts it: it comes back as a standby);
2. ``SIGTERM`` (a clean stop: it gives its leases up; then it is started again);
3. a partition between it and the database for ``spec.partition_s`` while it stays alive:
   every process logs in as a role of its own, the victim's role may not log in any more
   (``NOLOGIN``) and its sessions are terminated (``pg_terminate_backend``, in a loop, so that
   a reconnect that raced the ban is cut too): it cannot renew, fences itself, the others take
   its accounts after the expiry;
4. ``SIGSTOP`` for longer than the lease, then ``SIGCONT``;
5. the database restarted.

Counted from the exchange's logs and the database's lease history (``lease_epochs``):
orders (placements and cancels) sent for an account by a process whose lease had expired
(or that had none), cancels of an order another process placed under a later epoch, closes
of one position executed by two processes, entries of one position executed twice,
positions without a stop on the exchange for longer than ``spec.unprotected_bound_s``, and
the takeover time of every account a fault took from its owner (p50/p99; target
``lease_s + 2``). The last line printed is ``failover: …``.

A second trial (:func:`run_two_databases`) runs two processes with the same configuration on
two databases (two installations) and one exchange account: the second stops its entries
and raises the alarm before it sends anything. Its line is ``failover two databases: …``.

Run: ``make failover`` (long: 10 s leases, a 30 s partition) or
``python -m bench.failover [--long]``; the short variant runs in ``make test``
(``tests/process/test_failover.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from bench.chaos import (
    program_section,
    shutdown_supervisord,
    supervisord_rpc,
    supervisord_sections,
)
from sim.exchange import OrderLogEntry, SimExchange
from sim.signals import SignalFeed
from sim.sources import SignalSources
from sim.symbols import make_symbols

__all__ = [
    "LONG",
    "SHORT",
    "Cluster",
    "FailoverCounts",
    "FailoverSpec",
    "TwoDatabases",
    "count",
    "main",
    "run_failover",
    "run_two_databases",
]

log = logging.getLogger(__name__)

FEED_TOKEN = "failover-feed-token-7c2e"
CLIENT_ID = re.compile(r"^ps(\d+)([estc])\d+$")
EPS = 1e-9


@dataclass(frozen=True, slots=True)
class FailoverSpec:
    """One trial's knobs."""

    accounts: int = 6
    processes: int = 3
    symbols: int = 4
    max_accounts: int = 3
    lease_s: float = 10.0
    renew_s: float = 2.0
    fence_margin_s: float = 2.0
    partition_s: float = 30.0
    stop_extra_s: float = 5.0
    bursts_per_s: float = 3.0
    sync_interval_s: float = 1.0
    quiet_s: float = 3.0
    settle_timeout_s: float = 90.0
    startsecs: int = 2
    seed: int = 5

    @property
    def takeover_target_s(self) -> float:
        """The issue's bound: a dead owner's accounts are taken within lease + 2 s."""
        return self.lease_s + 2.0

    @property
    def unprotected_bound_s(self) -> float:
        """How long a filled position may be without a stop on the exchange: an owner that
        stops between the fill and its stop leaves it until its lease expires and the next
        owner recovers (lease, a renewal period, recovery), plus the stop-loss attempts'
        own bound (three attempts, a second each, the emergency close)."""
        return self.lease_s + self.renew_s + 2.0 + 6.0


LONG = FailoverSpec()
SHORT = FailoverSpec(
    lease_s=3.0,
    renew_s=0.5,
    fence_margin_s=1.0,
    partition_s=6.0,
    stop_extra_s=1.5,
    sync_interval_s=0.5,
    quiet_s=1.0,
    settle_timeout_s=30.0,
)


def program(i: int) -> str:
    return f"p{i}"


def account(j: int) -> str:
    return f"acc{j}"


def api_key(acc: str, prog: str) -> str:
    return f"key-{acc}-{prog}"


# --- results -------------------------------------------------------------------------------


@dataclass(slots=True)
class FailoverCounts:
    """What a trial counted. ``ok`` when every must-hold count is 0, every fault's accounts
    were taken over within the target and the processes settled after each (no problem)."""

    spec: FailoverSpec
    expired_lease_orders: int = 0
    foreign_cancels: int = 0
    double_closes: int = 0
    double_entries: int = 0
    unprotected: int = 0
    max_unprotected_s: float = 0.0
    takeovers: list[tuple[str, str, float]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    orders: int = 0
    cancels: int = 0
    positions: int = 0
    epochs: int = 0
    fenced_drops: int = 0
    #: Requests the exchange refused for their timestamp (-1021: older than recvWindow when
    #: they arrived): never executed, so no breach of I7 whenever they arrived.
    late_refused: int = 0
    problems: list[str] = field(default_factory=list)

    def _quantile(self, q: float) -> float:
        xs = sorted(t for _, _, t in self.takeovers)
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]

    @property
    def takeover_p50_s(self) -> float:
        return self._quantile(0.50)

    @property
    def takeover_p99_s(self) -> float:
        return self._quantile(0.99)

    @property
    def ok(self) -> bool:
        return (
            self.expired_lease_orders == 0
            and self.foreign_cancels == 0
            and self.double_closes == 0
            and self.double_entries == 0
            and self.unprotected == 0
            and bool(self.takeovers)
            and self.takeover_p99_s <= self.spec.takeover_target_s
            and not self.problems  # every fault taken over, every process settled
        )

    def by_fault(self) -> str:
        per: dict[str, list[float]] = defaultdict(list)
        for fault, _, t in self.takeovers:
            per[fault].append(t)
        return " ".join(f"{fault}={max(ts):.2f}s/{len(ts)}" for fault, ts in per.items() if ts)

    def detail_line(self) -> str:
        return (
            f"failover detail: faults={','.join(self.faults)} orders={self.orders}"
            f" cancels={self.cancels} positions={self.positions} epochs={self.epochs}"
            f" refused_late={self.late_refused}"
            f" max_unprotected_s={self.max_unprotected_s:.2f}"
            f" bound_s={self.spec.unprotected_bound_s:.1f}"
            f" takeover_max_by_fault(s/accounts)=[{self.by_fault()}]"
        )

    def line(self) -> str:
        s = self.spec
        return (
            f"failover: processes={s.processes} accounts={s.accounts} lease_s={s.lease_s:g}"
            f" faults={len(self.faults)} takeovers={len(self.takeovers)}"
            f" takeover_p50_s={self.takeover_p50_s:.2f} takeover_p99_s={self.takeover_p99_s:.2f}"
            f" (target<={s.takeover_target_s:g})"
            f" expired_lease_orders={self.expired_lease_orders}"
            f" foreign_cancels={self.foreign_cancels} double_closes={self.double_closes}"
            f" double_entries={self.double_entries} unprotected_over_bound={self.unprotected}"
        )


# --- the processes -----------------------------------------------------------------------


class Cluster:
    """supervisord in the foreground with one program per process (``p1``…), each the
    shipped program section with its own environment. Main thread only."""

    def __init__(
        self,
        workdir: Path,
        config: Path,
        envs: Mapping[str, Mapping[str, str]],
        startsecs: int = 2,
    ) -> None:
        self.workdir = workdir
        self.config = config
        self.envs = dict(envs)
        self.startsecs = startsecs
        self.sock = workdir / "supervisord.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        #: every pid each program ran with, in order (lease epochs name pids)
        self.pids: dict[str, list[int]] = {name: [] for name in envs}

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()
        lines = supervisord_sections(self.sock, self.workdir, self.workdir / "supervisord.log")
        daemon_env = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
        daemon_env["PYTHONUNBUFFERED"] = "1"
        for name, env in self.envs.items():
            section = program_section(self.config, self.workdir / f"{name}.log")
            section["startsecs"] = str(self.startsecs)
            # Secrets reach the program through supervisord's environment, as in production.
            refs = []
            for key, value in env.items():
                daemon_env[f"FO_{name}_{key}"] = value
                refs.append(f'{key}="%(ENV_FO_{name}_{key})s"')
            section["environment"] = ",".join(refs)
            lines.append(f"[program:{name}]")
            lines += [f"{k}={v}" for k, v in section.items()]
        conf = self.workdir / "supervisord.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "supervisord"), "-c", str(conf)],
            env=daemon_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            for name in self.envs:
                self.wait_started(name, timeout)
        except BaseException:
            self.shutdown()
            raise

    def _rpc(self) -> Any:
        return supervisord_rpc(self.sock)

    def info(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._rpc().supervisor.getProcessInfo(name)
        return result

    def wait_started(self, name: str, timeout: float, not_pid: int | None = None) -> int:
        """Wait until ``name`` runs with a pid other than ``not_pid``; record and return it."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"supervisord exited with {self.proc.returncode}")
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                info = self.info(name)
                pid = int(info["pid"] or 0)
                if info["statename"] in ("STARTING", "RUNNING") and pid > 1 and pid != not_pid:
                    if pid not in self.pids[name]:
                        self.pids[name].append(pid)
                    return pid
                if info["statename"] in ("FATAL", "BACKOFF"):
                    raise RuntimeError(f"{name} is {info['statename']}\n{self.tail(name)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not started after {timeout:.0f}s\n{self.tail(name)}")
            threading.Event().wait(0.05)

    def pid(self, name: str) -> int:
        return self.pids[name][-1]

    def signal(self, name: str, sig: signal.Signals) -> int:
        pid = self.pid(name)
        if pid <= 1 or pid in (os.getpid(), os.getpgrp()):
            raise RuntimeError(f"refusing to signal pid {pid}")
        os.kill(pid, sig)
        return pid

    def stop_program(self, name: str) -> int:
        """``supervisorctl stop`` (SIGTERM); returns the exit status (0 for a clean stop)."""
        rpc = self._rpc()
        with contextlib.suppress(xmlrpc.client.Fault):
            rpc.supervisor.stopProcess(name, True)
        return int(self.info(name)["exitstatus"])

    def start_program(self, name: str, timeout: float = 60.0) -> int:
        with contextlib.suppress(xmlrpc.client.Fault):
            self._rpc().supervisor.startProcess(name, False)
        return self.wait_started(name, timeout, not_pid=self.pid(name))

    def program_of(self, pid: int | None) -> str | None:
        for name, pids in self.pids.items():
            if pid in pids:
                return name
        return None

    def live_pids(self) -> set[int]:
        out = set()
        for name in self.envs:
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                info = self.info(name)
                if info["statename"] in ("STARTING", "RUNNING") and int(info["pid"] or 0) > 1:
                    out.add(int(info["pid"]))
        return out

    def tail(self, name: str, n: int = 30) -> str:
        try:
            lines = (self.workdir / f"{name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def stop_all(self) -> dict[str, int]:
        """Stop every program with SIGTERM; their exit statuses."""
        out = {}
        for name in self.envs:
            try:
                out[name] = self.stop_program(name)
            except (OSError, xmlrpc.client.Error) as exc:
                log.warning("stopping %s: %s", name, exc)
                out[name] = -1
        return out

    def shutdown(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            shutdown_supervisord(proc, self.sock)


# --- the harness ---------------------------------------------------------------------------


def write_config(path: Path, spec: FailoverSpec, sim: SimExchange, feed: SignalFeed) -> None:
    symbols = ", ".join(f'"{s}"' for s in sim.initial_prices)
    accounts = "".join(
        f"""
[accounts.{account(j)}]
rest_url = "{sim.base_url}"
ws_url = "{sim.ws_url}"
symbols = [{symbols}]
workers = 3
enable_rate_limit = false
timeout_s = 5.0
"""
        for j in range(1, spec.accounts + 1)
    )
    path.write_text(
        f"""# failover trial (bench/failover.py)
{accounts}
[risk]
sl_max_attempts = 3

[signal_policy]
reentry = "allow"
max_signal_age_s = 30.0

[sync]
interval_s = {spec.sync_interval_s}

[supervisor]
shutdown_grace_s = 5.0

[database]
account_lock_wait = true

[ownership]
lease_s = {spec.lease_s}
renew_s = {spec.renew_s}
fence_margin_s = {spec.fence_margin_s}
max_accounts = {spec.max_accounts}

[metrics]
address = "127.0.0.1:0"

[feeds]
signal_url = "{feed.url}"
silence_timeout_s = 15.0

[logging]
level = "INFO"
json = true
"""
    )


def role(prog: str) -> str:
    return f"failover_{prog}"


def create_roles(dsn: str, progs: list[str]) -> None:
    """One login role per process (superuser, so that it may do what the server's own user
    does on this throwaway server): the partition bans one role."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for prog in progs:
            conn.execute(f"DROP ROLE IF EXISTS {role(prog)}")
            conn.execute(f"CREATE ROLE {role(prog)} SUPERUSER LOGIN")


def environments(spec: FailoverSpec, dsn: str) -> dict[str, dict[str, str]]:
    """Each program's secrets: its own API key per account, its own database role and
    application_name."""
    out = {}
    for i in range(1, spec.processes + 1):
        prog = program(i)
        env = {
            "PS_DATABASE_DSN": psycopg.conninfo.make_conninfo(
                dsn, user=role(prog), application_name=f"failover-{prog}"
            ),
            "PS_FEED_TOKEN": FEED_TOKEN,
        }
        for j in range(1, spec.accounts + 1):
            acc = account(j)
            env[f"PS_{acc.upper()}_API_KEY"] = api_key(acc, prog)
            env[f"PS_{acc.upper()}_API_SECRET"] = f"secret-{acc}-{prog}"
        out[prog] = env
    return out


@dataclass(frozen=True, slots=True)
class Lease:
    account: str
    epoch: int
    pid: int | None
    expired: bool


def leases(dsn: str) -> dict[str, Lease]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT account, epoch, pid, owner IS NULL OR expires_at <= now() FROM leases"
        ).fetchall()
    return {r[0]: Lease(r[0], r[1], r[2], bool(r[3])) for r in rows}


def epochs(dsn: str) -> dict[str, list[dict[str, Any]]]:
    """Every account's lease history, oldest first (``lease_epochs``)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT account, epoch, pid, extract(epoch FROM acquired_at)::float8, "
            "extract(epoch FROM least(expires_at, coalesce(released_at, expires_at)))::float8, "
            "how FROM lease_epochs ORDER BY account, epoch"
        ).fetchall()
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for acc, epoch, pid, acquired, end, how in rows:
        out[acc].append({"epoch": epoch, "pid": pid, "acquired": acquired, "end": end, "how": how})
    return out


class _Sampler:
    """Positions on the exchange without a resting stop: spells, and those over the bound."""

    def __init__(self, sim: SimExchange, accounts: list[str], bound_s: float) -> None:
        self.sim = sim
        self.accounts = accounts
        self.bound_s = bound_s
        self.since: dict[tuple[str, str], float] = {}
        self.episodes: list[tuple[str, str, float]] = []
        self.max_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failover-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def sample(self) -> None:
        now = time.monotonic()
        for acc in self.accounts:
            positions = self.sim.positions(acc)
            stops: dict[str, set[str]] = defaultdict(set)
            for o in self.sim.open_orders(acc):
                if o.kind == "algo" and o.type == "STOP_MARKET":
                    stops[o.symbol].add(o.side)
            for sym, p in positions.items():
                key = (acc, sym)
                close_side = "SELL" if p.qty > 0 else "BUY"
                if close_side in stops.get(sym, ()):
                    self._end(key, now)
                else:
                    self.since.setdefault(key, now)
            for key in [k for k in self.since if k[0] == acc and k[1] not in positions]:
                self._end(key, now)
        for t0 in self.since.values():
            self.max_s = max(self.max_s, now - t0)

    def _end(self, key: tuple[str, str], now: float) -> None:
        t0 = self.since.pop(key, None)
        if t0 is None:
            return
        spell = now - t0
        self.max_s = max(self.max_s, spell)
        if spell > self.bound_s:
            self.episodes.append((key[0], key[1], spell))

    def finish(self) -> None:
        now = time.monotonic()
        for key in list(self.since):
            t0 = self.since[key]
            if now - t0 > self.bound_s:
                self.episodes.append((key[0], key[1], now - t0))

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(Exception):
                self.sample()


class _Partition:
    """A partition between one process and the database while it stays alive: its role may
    not log in, and its sessions are terminated in a loop (one that raced the ban is cut
    too). Leaving the block lets it log in again."""

    def __init__(self, admin_dsn: str, prog: str) -> None:
        self.admin = admin_dsn
        self.role = role(prog)
        self.killed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failover-partition", daemon=True)

    def __enter__(self) -> _Partition:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {self.role} NOLOGIN")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10.0)
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {self.role} LOGIN")

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.admin, autocommit=True, connect_timeout=3)
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE usename = %s AND pid <> pg_backend_pid()",
                    (self.role,),
                ).fetchall()
                self.killed += sum(1 for r in rows if r[0])
            except psycopg.Error:
                conn = None
            self._stop.wait(0.05)
        if conn is not None:
            conn.close()


class Trial:
    """One failover trial's moving parts (see :func:`run_failover`)."""

    def __init__(
        self, spec: FailoverSpec, server: Any, dsn: str, workdir: Path, sim: SimExchange
    ) -> None:
        self.spec = spec
        self.server = server
        self.dsn = dsn
        self.workdir = workdir
        self.sim = sim
        self.accounts = [account(j) for j in range(1, spec.accounts + 1)]
        self.faults: list[str] = []
        self.takeovers: list[tuple[str, str, float]] = []
        self.problems: list[str] = []
        self.cluster: Cluster | None = None

    # -- helpers

    def owners(self) -> dict[str, str | None]:
        """account -> program owning it now (a live pid, lease not expired), or None."""
        assert self.cluster is not None
        live = self.cluster.live_pids()
        now = self._leases()
        out: dict[str, str | None] = {}
        for acc in self.accounts:
            lease = now.get(acc)
            ok = lease is not None and not lease.expired and lease.pid in live
            out[acc] = self.cluster.program_of(lease.pid) if ok and lease is not None else None
        return out

    def _leases(self) -> dict[str, Lease]:
        try:
            return leases(self.dsn)
        except psycopg.Error:
            return {}

    def ready(self) -> bool:
        """Every program runs and its lease keeper went round recently (its heartbeat): a
        restarted process is a standby with room, not a process still importing."""
        assert self.cluster is not None
        live = self.cluster.live_pids()
        if len(live) < self.spec.processes:
            return False
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=3) as conn:
                rows = conn.execute(
                    "SELECT pid FROM supervisor_processes WHERE stopped_at IS NULL "
                    "AND seen_at > now() - make_interval(secs => %s)",
                    (4 * self.spec.renew_s + 1.0,),
                ).fetchall()
        except psycopg.Error:
            return False
        return live <= {r[0] for r in rows}

    def settled(self, timeout: float | None = None, *, ready: bool = True) -> bool:
        """Wait until every account is owned by a live process (and, with ``ready``, every
        process is up and going round)."""
        deadline = time.monotonic() + (timeout or self.spec.settle_timeout_s)
        while time.monotonic() < deadline:
            if all(self.owners().values()) and (not ready or self.ready()):
                return True
            threading.Event().wait(0.1)
        self.problems.append(
            f"not settled in time (ready={ready}): owners {self.owners()}, "
            f"processes up {self.ready()}"
        )
        return False

    def victim(self) -> tuple[str, list[str]]:
        owners = self.owners()
        per = Counter(p for p in owners.values() if p is not None)
        prog = per.most_common(1)[0][0]
        return prog, [a for a, p in owners.items() if p == prog]

    def measure(self, fault: str, victim_pid: int, accounts: list[str], t0: float) -> None:
        """Takeover of each of ``accounts`` after the fault at ``t0`` (wall clock): the first
        epoch acquired after it by another process."""
        self.faults.append(fault)
        history = epochs(self.dsn)
        for acc in accounts:
            later = [
                e
                for e in history.get(acc, [])
                if e["acquired"] >= t0 - 0.001 and e["pid"] != victim_pid
            ]
            if not later:
                self.problems.append(f"{fault}: {acc} was not taken over")
                continue
            self.takeovers.append((fault, acc, later[0]["acquired"] - t0))

    def quiet(self) -> None:
        threading.Event().wait(self.spec.quiet_s)

    # -- the faults

    def kill9(self) -> None:
        assert self.cluster is not None
        prog, accounts = self.victim()
        t0 = time.time()
        pid = self.cluster.signal(prog, signal.SIGKILL)
        self.cluster.wait_started(prog, 60.0, not_pid=pid)  # supervisord restarts it
        self.settled()
        self.measure("kill9", pid, accounts, t0)

    def sigterm(self) -> None:
        assert self.cluster is not None
        prog, accounts = self.victim()
        pid = self.cluster.pid(prog)
        t0 = time.time()
        status = self.cluster.stop_program(prog)
        if status != 0:
            self.problems.append(f"sigterm: {prog} exited {status}")
        self.settled(ready=False)  # two processes left
        self.measure("sigterm", pid, accounts, t0)
        self.cluster.start_program(prog)
        self.settled()

    def partition(self) -> None:
        assert self.cluster is not None
        prog, accounts = self.victim()
        pid = self.cluster.pid(prog)
        admin = psycopg.conninfo.make_conninfo(self.dsn, application_name="failover-harness")
        t0 = time.time()
        with _Partition(admin, prog):
            end = time.monotonic() + self.spec.partition_s
            self.settled(self.spec.partition_s + self.spec.settle_timeout_s, ready=False)
            threading.Event().wait(max(0.0, end - time.monotonic()))
        self.measure("db_partition", pid, accounts, t0)
        self.settled()

    def sigstop(self) -> None:
        assert self.cluster is not None
        prog, accounts = self.victim()
        pid = self.cluster.pid(prog)
        t0 = time.time()
        self.cluster.signal(prog, signal.SIGSTOP)
        try:
            threading.Event().wait(self.spec.lease_s + self.spec.stop_extra_s)
        finally:
            self.cluster.signal(prog, signal.SIGCONT)
        self.settled()
        self.measure("sigstop", pid, accounts, t0)

    def db_restart(self) -> None:
        self.faults.append("db_restart")
        self.server.stop("fast")
        self.server.start()
        self.settled()


#: Binance's "timestamp outside recvWindow" (the request was refused, not executed).
TIMESTAMP_OUTSIDE = -1021


def _epoch_at(history: list[dict[str, Any]], pids: set[int], t: float) -> int | None:
    """The epoch a process (any of ``pids``) held at ``t`` (wall clock), or None."""
    for e in history:
        if e["pid"] in pids and e["acquired"] <= t <= e["end"]:
            return int(e["epoch"])
    return None


def count(
    spec: FailoverSpec,
    sim: SimExchange,
    history: Mapping[str, list[dict[str, Any]]],
    pids: Mapping[str, list[int]],
    sampler_episodes: list[tuple[str, str, float]],
) -> FailoverCounts:
    """The must-hold counts, from the exchange's logs and the lease history (no process
    runs any more). ``pids``: every pid each program ran with."""
    c = FailoverCounts(spec)
    by_prog = {prog: set(ps) for prog, ps in pids.items()}

    def prog_of(entry: OrderLogEntry) -> str | None:
        m = re.match(r"^key-(acc\d+)-(p\d+)$", entry.api_key)
        return m.group(2) if m else None

    def under_lease(entry: OrderLogEntry, what: str) -> tuple[str, int | None] | None:
        """The program that made the call and its lease epoch then (None: no valid lease,
        counted); None for a call of nobody's program, or one the exchange refused for its
        timestamp (counted apart: it never executed)."""
        prog = prog_of(entry)
        if prog is None:
            return None
        if entry.outcome == "rejected" and entry.code == TIMESTAMP_OUTSIDE:
            c.late_refused += 1
            return None
        epoch = _epoch_at(history.get(entry.account, []), by_prog.get(prog, set()), entry.time)
        if epoch is None:
            c.expired_lease_orders += 1
            c.problems.append(
                f"{entry.account}: {prog} {what} at {entry.time:.3f} without a valid lease"
            )
        return prog, epoch

    placed: dict[tuple[str, str], tuple[str, int | None]] = {}
    orders = sim.order_log()
    cancels = sim.cancel_log()
    c.orders, c.cancels = len(orders), len(cancels)
    for e in orders:
        made = under_lease(e, f"sent {e.endpoint} {e.client_id}")
        if made is not None:
            placed.setdefault((e.account, e.client_id), made)
    for e in cancels:
        made = under_lease(e, f"cancelled {e.client_id}")
        if made is None:
            continue
        prog, epoch = made
        owner = placed.get((e.account, e.client_id))
        if owner is not None and owner[0] != prog:
            other_epoch = owner[1]
            if epoch is None or (other_epoch is not None and other_epoch > epoch):
                c.foreign_cancels += 1
                c.problems.append(
                    f"{e.account}: {prog} (epoch {epoch}) cancelled {e.client_id} placed by "
                    f"{owner[0]} (epoch {other_epoch})"
                )
    entries: Counter[tuple[str, int]] = Counter()
    closers: dict[tuple[str, int], set[str]] = defaultdict(set)
    for e in orders:
        m = CLIENT_ID.match(e.client_id)
        sender = prog_of(e)
        if m is None or sender is None or e.outcome != "accepted":
            continue
        pos = (e.account, int(m.group(1)))
        if m.group(2) == "e":
            entries[pos] += 1
        elif m.group(2) == "c":
            closers[pos].add(sender)
    positions = set(entries) | set(closers)
    c.positions = len(positions)
    for pos, n in entries.items():
        if n > 1:
            c.double_entries += 1
            c.problems.append(f"{pos[0]} position {pos[1]}: {n} entry orders executed")
    for pos, progs in closers.items():
        if len(progs) > 1:
            c.double_closes += 1
            c.problems.append(f"{pos[0]} position {pos[1]}: closed by {sorted(progs)}")
    c.unprotected = len(sampler_episodes)
    for acc, sym, s in sampler_episodes[:5]:
        c.problems.append(f"{acc} {sym}: without a stop for {s:.1f}s")
    c.epochs = sum(len(v) for v in history.values())
    return c


@contextlib.contextmanager
def _server() -> Iterator[tuple[Any, str]]:
    """An embedded PostgreSQL of the trial's own (``.data/pgf<pid>``, restartable, deleted
    afterwards; leftovers of dead trials are removed first) and a migrated database on it:
    :func:`testkit.pg.private_server` under a prefix of its own, so that a test of this
    process may hold the default one at the same time."""
    from infra.store.migrations import migrate
    from testkit import pg

    with pg.private_server(prefix="pgf") as server:
        dsn = pg.create_database(server.dsn, "failover")
        migrate(dsn)
        yield server, dsn


def run_failover(spec: FailoverSpec, workdir: Path) -> FailoverCounts:
    """The trial of the module docstring; files (config, logs) go in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    accounts = [account(j) for j in range(1, spec.accounts + 1)]
    keys = {
        acc: [api_key(acc, program(i)) for i in range(1, spec.processes + 1)] for acc in accounts
    }
    with (
        _server() as (server, dsn),
        SimExchange(make_symbols(spec.symbols), seed=spec.seed, accounts=keys) as sim,
        SignalFeed("127.0.0.1", 0, token=FEED_TOKEN, redeliver=True) as feed,
    ):
        config = workdir / "failover.toml"
        write_config(config, spec, sim, feed)
        create_roles(dsn, [program(i) for i in range(1, spec.processes + 1)])
        trial = Trial(spec, server, dsn, workdir, sim)
        cluster = Cluster(workdir, config, environments(spec, dsn), spec.startsecs)
        trial.cluster = cluster
        sampler = _Sampler(sim, accounts, spec.unprotected_bound_s)
        sources = SignalSources(
            feed.send_signal,
            list(sim.initial_prices),
            sim.mark_price,
            accounts=accounts,
            rate_per_s=spec.bursts_per_s,
            seed=spec.seed,
        )
        cluster.start()
        try:
            if not feed.wait_for_clients(spec.processes, 60.0):
                raise RuntimeError("the processes did not connect to the signal feed")
            trial.settled()
            sim.start_random_walk(0.1, 0.002)
            sampler.start()
            sources.start()
            trial.quiet()
            for fault in (trial.kill9, trial.sigterm, trial.partition, trial.sigstop):
                fault()
                trial.quiet()
            trial.db_restart()
            trial.quiet()
            sources.stop()
            sim.stop_random_walk()
            threading.Event().wait(3 * spec.sync_interval_s + 1.0)
            sampler.stop()
            sampler.finish()
            statuses = cluster.stop_all()
            for prog, status in statuses.items():
                if status != 0:
                    trial.problems.append(f"{prog} stopped with exit status {status}")
        finally:
            sources.stop()
            sim.stop_random_walk()
            sampler.stop()
            cluster.shutdown()
        counts = count(spec, sim, epochs(dsn), cluster.pids, sampler.episodes)
        counts.max_unprotected_s = sampler.max_s
        counts.faults = trial.faults
        counts.takeovers = trial.takeovers
        counts.problems = trial.problems + counts.problems
        return counts


# --- two databases, one account ---------------------------------------------------------


@dataclass(slots=True)
class TwoDatabases:
    """The second trial's counts: the second installation's entries (must be 0), whether
    and when it raised the alarm, the first installation's entries meanwhile."""

    second_entries: int = 0
    second_orders: int = 0
    alarm_raised: bool = False
    alarm_at: float | None = None
    first_second_order_at: float | None = None
    first_entries: int = 0
    signals: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.second_entries == 0 and self.alarm_raised and self.first_entries > 0

    def line(self) -> str:
        return (
            f"failover two databases: alarm_raised={self.alarm_raised}"
            f" entries_by_second_installation={self.second_entries}"
            f" orders_by_second_installation={self.second_orders}"
            f" entries_by_first={self.first_entries} signals={self.signals}"
        )


def run_two_databases(workdir: Path, lease_s: float = 3.0) -> TwoDatabases:
    """Two processes, same configuration, two databases, one exchange account: the first
    trades (its stops rest on the account); the second starts, sees them on its first sync,
    raises the alarm and stops its entries before it sends anything; then signals flow to
    both. Both run in this process (:class:`~supervision.app.App`)."""
    from infra.config import load_config
    from infra.store.migrations import new_installation
    from supervision.app import App
    from testkit import pg

    workdir.mkdir(parents=True, exist_ok=True)
    out = TwoDatabases()
    admin = pg.admin_dsn()
    keys = {"acc1": ["key-acc1-a", "key-acc1-b"]}
    spec = replace(SHORT, accounts=1, processes=2, lease_s=lease_s)
    with (
        pg.fresh_database(admin) as dsn_a,
        pg.fresh_database(admin) as dsn_b,
        SimExchange(make_symbols(spec.symbols), seed=3, accounts=keys) as sim,
        SignalFeed("127.0.0.1", 0, token=FEED_TOKEN) as feed,
    ):
        new_installation(dsn_b)  # a clone of the same template: another database now
        config = workdir / "two.toml"
        write_config(config, spec, sim, feed)
        apps: list[Any] = []

        def start(dsn: str, key: str) -> Any:
            env = {
                "PS_DATABASE_DSN": dsn,
                "PS_FEED_TOKEN": FEED_TOKEN,
                "PS_ACC1_API_KEY": key,
                "PS_ACC1_API_SECRET": f"secret-{key}",
            }
            app = App(load_config(config, environ=env))
            apps.append(app)
            app.start()
            return app

        sources = SignalSources(
            feed.send_signal,
            list(sim.initial_prices),
            sim.mark_price,
            accounts=["acc1"],
            rate_per_s=4.0,
            seed=11,
        )
        try:
            first = start(dsn_a, "key-acc1-a")
            _until(lambda: first.supervisor.entries_open("acc1"), 30, "first owns acc1")
            sources.start()
            _until(
                lambda: any(o.kind == "algo" for o in sim.open_orders("acc1")),
                30,
                "a stop of the first installation rests",
            )
            second = start(dsn_b, "key-acc1-b")
            guard = second.ownership.guard
            _until(lambda: guard.alarm("acc1") is not None, 30, "the second raises the alarm")
            out.alarm_raised = True
            out.alarm_at = time.time()
            threading.Event().wait(3.0)  # signals keep coming to both
            sources.stop()
            out.signals = sources.sent
            if second.supervisor.entries_open("acc1"):
                out.problems.append("the second installation's entries are open")
            if second.health.down().get("installation:acc1") is None:
                out.problems.append("no installation:acc1 readiness failure on the second")
        finally:
            sources.stop()
            for app in reversed(apps):
                app.shutdown()
        log_b = [e for e in sim.order_log("acc1") if e.api_key == "key-acc1-b"]
        out.second_orders = len(log_b) + sum(
            1 for e in sim.cancel_log("acc1") if e.api_key == "key-acc1-b"
        )
        out.second_entries = sum(
            1 for e in log_b if (m := CLIENT_ID.match(e.client_id)) and m.group(2) == "e"
        )
        out.first_second_order_at = min((e.time for e in log_b), default=None)
        out.first_entries = sum(
            1
            for e in sim.order_log("acc1")
            if e.api_key == "key-acc1-a"
            and e.outcome == "accepted"
            and (m := CLIENT_ID.match(e.client_id))
            and m.group(2) == "e"
        )
        return out


def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        threading.Event().wait(0.05)


def report(counts: FailoverCounts, two: TwoDatabases | None = None) -> None:
    for p in counts.problems[:20]:
        print(f"failover problem: {p}")
    if two is not None:
        for p in two.problems:
            print(f"failover problem (two databases): {p}")
        print(two.line())
    print(counts.detail_line())
    print(counts.line(), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.failover", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--long", action="store_true", help="10 s leases, a 30 s partition")
    ap.add_argument("--no-two-databases", action="store_true", help="skip the second trial")
    args = ap.parse_args(argv)
    spec = LONG if args.long else SHORT
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s %(message)s")
    from testkit import pg

    t0 = time.monotonic()
    try:
        two = None if args.no_two_databases else run_two_databases(Path(".data") / "failover2")
        counts = run_failover(spec, Path(".data") / "failover")
    finally:
        pg.shutdown()
    print(f"# failover {spec} in {time.monotonic() - t0:.1f}s")
    report(counts, two)
    return 0 if counts.ok and (two is None or two.ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
