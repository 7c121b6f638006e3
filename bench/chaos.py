"""Chaos: the race trial with the supervisor as a real process under supervisord, SIGKILLed
at random moments.

:class:`UnderSupervisord` runs ``supervisord`` (the ``supervisor`` package) in the foreground
with the program section of ``deploy/supervisord.conf`` — its stop signal, stop wait,
autorestart, exit codes, start seconds and retries as shipped — changing only what a machine
of its own needs: the command (this virtual environment's ``position-supervisor``), the
folder, the log file, no ``user=`` (the harness may not have that user). Secrets reach the
program through supervisord's environment, as in production.

:func:`killer` kills the program with SIGKILL ``kills`` times during the trial, each at a
random moment 0.5–``max_gap_s`` s after supervisord reports it RUNNING again. At the end the
program is stopped with SIGTERM (supervisorctl stop) and must exit 0, then supervisord is
shut down. The race counts must hold as without kills, every signal included: one the
killed process took but had not decided, or sent while no process was up, is re-sent by the
feed to the next process (it was not acknowledged) and counted in ``redelivered``.

Run: ``make chaos`` or ``python -m bench.chaos [--kills N] [--long]``.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.race import (
    LONG,
    SHORT,
    RaceCounts,
    RaceSpec,
    Supervised,
    on_fresh_database,
    run_race,
)

__all__ = [
    "PROGRAM",
    "UnderSupervisord",
    "killer",
    "main",
    "program_section",
    "run_chaos",
    "shutdown_supervisord",
    "supervisord_rpc",
    "supervisord_sections",
]

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "supervisord.conf"
PROGRAM = "position-supervisor"


def program_section(config: Path, log: Path) -> dict[str, str]:
    """The program section of the shipped ``deploy/supervisord.conf``, adapted to this machine:
    the command runs this interpreter's ``position-supervisor`` (or ``python -m supervision``)
    on ``config`` from the repository, its output goes to ``log`` (no backups), no ``user``.

    Used by :class:`UnderSupervisord` here and by ``bench/failover.py`` so that the benchmarks
    run the deployment as shipped; ``tests/process/test_race.py`` pins it against the file.
    Raises ``KeyError`` if the shipped file lost its program section."""
    parser = configparser.RawConfigParser()
    parser.read(DEPLOY)
    section = dict(parser[f"program:{PROGRAM}"])
    script = Path(sys.executable).parent / PROGRAM
    command = (
        f"{script} run --config {config}"
        if script.exists()
        else f"{sys.executable} -m supervision run --config {config}"
    )
    section.update(command=command, directory=str(ROOT), stdout_logfile=str(log))
    section.pop("user", None)
    section["stdout_logfile_backups"] = "0"
    return section


def supervisord_sections(sock: Path, workdir: Path, logfile: Path) -> list[str]:
    """The daemon's own lines of a benchmark's ``supervisord.conf``: in the foreground, logging
    to ``logfile``, its pid file and the children's logs in ``workdir``, XML-RPC (and
    ``supervisorctl``) on the unix socket ``sock``. The program sections follow them."""
    return [
        "[unix_http_server]",
        f"file={sock}",
        "[supervisord]",
        "nodaemon=true",
        f"logfile={logfile}",
        f"pidfile={workdir / 'supervisord.pid'}",
        f"childlogdir={workdir}",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{sock}",
    ]


def supervisord_rpc(sock: Path) -> Any:
    """An XML-RPC proxy to the supervisord listening on the unix socket ``sock``."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{sock}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def shutdown_supervisord(proc: subprocess.Popen[bytes], sock: Path) -> None:
    """Ask the supervisord of ``proc`` to shut down (it stops its programs first) and reap it;
    killed when it has not exited 60 s later. Used by :class:`UnderSupervisord` and
    ``bench/failover.py``'s cluster; a supervisord already gone is not an error."""
    with contextlib.suppress(Exception):
        supervisord_rpc(sock).supervisor.shutdown()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class UnderSupervisord:
    """supervisord in the foreground, managing the position supervisor. Main thread only."""

    def __init__(self, workdir: Path, ready_timeout_s: float = 60.0) -> None:
        self.workdir = workdir
        self.ready_timeout_s = ready_timeout_s
        self.sock = workdir / "supervisord.sock"
        self.program_log = workdir / "program.log"
        self.daemon_log = workdir / "supervisord.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._kills: list[float] = []
        self._killed: set[int] = set()
        self.exit_statuses: list[int] = []

    # -- Supervised --------------------------------------------------------------------

    def start(self, config: Path, env: Mapping[str, str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.sock.exists():
            try:
                self.info()
            except (OSError, xmlrpc.client.Error):
                self.sock.unlink()  # left by a supervisord that is gone
            else:
                raise RuntimeError(f"a supervisord is already running on {self.sock}")
        conf = self.workdir / "supervisord.conf"
        program = program_section(config, self.program_log)
        lines = [
            *supervisord_sections(self.sock, self.workdir, self.daemon_log),
            f"[program:{PROGRAM}]",
        ]
        lines += [f"{k}={v}" for k, v in program.items()]
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "supervisord"), "-c", str(conf)],
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: no signal of ours reaches it
        )
        try:
            self.wait_running(self.ready_timeout_s)
        except BaseException:
            self.shutdown()
            raise

    def kills(self) -> list[float]:
        return list(self._kills)

    def stop(self) -> None:
        """``supervisorctl stop`` (SIGTERM, the program must exit 0), then shut supervisord
        down. Raises when the program did not exit 0."""
        try:
            if self.proc is None:
                return
            rpc = self._rpc()
            with contextlib.suppress(xmlrpc.client.Fault):
                rpc.supervisor.stopProcess(PROGRAM, True)
            info = rpc.supervisor.getProcessInfo(PROGRAM)
            status = int(info["exitstatus"])
            self.exit_statuses.append(status)
            if info["statename"] != "STOPPED" or status != 0:
                raise RuntimeError(
                    f"{PROGRAM} did not stop cleanly: {info['statename']}, exit {status}"
                    f"\n{self.tail()}"
                )
        finally:
            self.shutdown()

    # -- control -----------------------------------------------------------------------

    def _rpc(self) -> Any:
        return supervisord_rpc(self.sock)

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self._rpc().supervisor.getProcessInfo(PROGRAM)
        return result

    def wait_running(self, timeout: float) -> int:
        """Wait until supervisord says RUNNING (past ``startsecs``) with a process that was
        not killed here (right after a kill it may still report the dead one); returns its
        pid."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"supervisord exited with {self.proc.returncode}")
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                info = self.info()
                pid = int(info["pid"] or 0)
                if info["statename"] == "RUNNING" and pid > 1 and pid not in self._killed:
                    return pid
                if info["statename"] == "FATAL":
                    raise RuntimeError(f"{PROGRAM} is FATAL under supervisord\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{PROGRAM} not RUNNING after {timeout:.0f}s\n{self.tail()}")
            threading.Event().wait(0.1)

    def kill(self) -> int:
        """SIGKILL the running program; returns its pid. Raises when it is not running (a pid
        of 0 would signal this whole process group)."""
        info = self.info()
        pid = int(info["pid"])
        if info["statename"] != "RUNNING" or pid <= 1 or pid in (os.getpid(), os.getpgrp()):
            raise RuntimeError(f"{PROGRAM} is not running ({info['statename']}, pid {pid})")
        os.kill(pid, signal.SIGKILL)
        self._killed.add(pid)
        self._kills.append(time.monotonic())
        return pid

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.program_log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no program log)"

    def shutdown(self) -> None:
        """Shut supervisord down (it stops the program first) and reap it. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None:
            shutdown_supervisord(proc, self.sock)


def killer(
    kills: int, max_gap_s: float = 3.0, seed: int = 11
) -> Callable[[Supervised, float], None]:
    """A ``during`` hook for :func:`bench.race.run_race`: ``kills`` SIGKILLs before the
    deadline, each at a random moment after the program is RUNNING again."""
    rng = random.Random(seed)

    def during(runner: Supervised, deadline: float) -> None:
        assert isinstance(runner, UnderSupervisord)
        for _ in range(kills):
            runner.wait_running(runner.ready_timeout_s)
            threading.Event().wait(rng.uniform(0.5, max_gap_s))
            runner.kill()
        runner.wait_running(runner.ready_timeout_s)

    return during


def run_chaos(spec: RaceSpec, dsn: str, workdir: Path, kills: int) -> RaceCounts:
    """A race trial under supervisord with ``kills`` SIGKILLs."""
    runner = UnderSupervisord(workdir)
    return run_race(spec, dsn, workdir, runner, during=killer(kills, seed=spec.seed))


# A fill can land while the process is down: supervisord's backoff, startsecs do not delay
# it, but the start (Python, PostgreSQL, markets, recovery) does.
CHAOS_SHORT = replace(SHORT, duration_s=6.0, restart_allowance_s=10.0)
CHAOS_LONG = replace(LONG, restart_allowance_s=10.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--long", action="store_true", help="the long race trial's load")
    ap.add_argument("--duration", type=float)
    ap.add_argument("--venue", choices=["binanceusdm", "bybit"], default="binanceusdm")
    args = ap.parse_args(argv)
    spec = replace(CHAOS_LONG if args.long else CHAOS_SHORT, venue=args.venue)
    if args.duration is not None:
        spec = replace(spec, duration_s=args.duration)
    return on_fresh_database(
        lambda dsn: run_chaos(spec, dsn, Path(".data") / "chaos", args.kills),
        f"chaos {spec} kills={args.kills}",
    )


if __name__ == "__main__":
    raise SystemExit(main())
