"""deploy/supervisord.conf under a real supervisord (the ``supervisor`` dev dependency).

The shipped program section, changed only where a test machine must differ (the command's
interpreter and configuration path, the folder, the log file, no ``user=``), runs under a
supervisord whose environment holds only what the configuration needs: an account with
``credentials = "env"`` (its two keys exported) on the sim/ exchange, the DSN written in the
file (it has no password), no signal feed and so no token. The program must reach RUNNING,
answer ``/readyz``, see its keys (the account is managed), and stop with exit 0 on
``supervisorctl stop``. Before the fix the section expanded four ``%(ENV_…)s`` and
supervisord refused to start at all.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import subprocess
import sys
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim.exchange import SimExchange
from testkit import pg
from testkit.waiting import poll
from tests.deploy.tools import DEPLOY, ROOT
from tests.process.harness import http_get

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PROGRAM = "position-supervisor"


def _section(config: Path, log: Path) -> dict[str, str]:
    parser = configparser.RawConfigParser()
    parser.read(DEPLOY / "supervisord.conf")
    section = dict(parser[f"program:{PROGRAM}"])
    section.update(
        command=f"{sys.executable} -m supervision run --config {config}",
        directory=str(ROOT),
        stdout_logfile=str(log),
        stdout_logfile_backups="0",
    )
    section.pop("user", None)
    return section


@pytest.fixture
def dsn(pg_admin: str) -> Iterator[str]:
    with pg.fresh_database(pg_admin) as d:
        yield d


def _rpc(sock: Path) -> Any:
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{sock}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def test_shipped_section_starts_with_only_what_the_configuration_needs(
    tmp_path: Path, dsn: str
) -> None:
    section = _section(tmp_path / "c.toml", tmp_path / "program.log")
    assert "environment" not in section or "%(ENV_" not in section["environment"]
    assert section["stopsignal"] == "TERM" and int(section["stopwaitsecs"]) > 10
    with SimExchange({"BTCUSDT": 60_000.0}) as sim:
        (tmp_path / "c.toml").write_text(
            f"""
[accounts.main]
rest_url = "{sim.base_url}"
ws_url = "{sim.ws_url}"
symbols = ["BTCUSDT"]
enable_rate_limit = false

[database]
dsn = "{dsn}"
account_lock_wait = true

[sync]
interval_s = 0.5

[metrics]
address = "127.0.0.1:0"
"""
        )
        sock = tmp_path / "supervisord.sock"
        conf = tmp_path / "supervisord.conf"
        lines = [
            "[unix_http_server]",
            f"file={sock}",
            "[supervisord]",
            "nodaemon=true",
            f"logfile={tmp_path / 'supervisord.log'}",
            f"pidfile={tmp_path / 'supervisord.pid'}",
            f"childlogdir={tmp_path}",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            f"[program:{PROGRAM}]",
            # A value over several lines (environment=) keeps its continuation indented.
            *(f"{k}={v}".replace("\n", "\n    ") for k, v in section.items()),
        ]
        conf.write_text("\n".join(lines) + "\n")
        # supervisord's environment: the keys this configuration needs, nothing else of ours.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
        env.update(PS_MAIN_API_KEY="sup-key-0123456789", PS_MAIN_API_SECRET="sup-secret-01234567")
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "supervisord"), "-c", str(conf)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log = tmp_path / "program.log"
        try:

            def running() -> bool:
                if daemon.poll() is not None:
                    out = daemon.stdout.read().decode() if daemon.stdout else ""
                    raise AssertionError(f"supervisord exited {daemon.returncode}: {out}")
                with contextlib.suppress(OSError, xmlrpc.client.Error):
                    info = _rpc(sock).supervisor.getProcessInfo(PROGRAM)
                    assert info["statename"] != "FATAL", log.read_text()
                    return bool(info["statename"] == "RUNNING")
                return False

            poll(running, 60, "RUNNING under supervisord", interval=0.1)
            text = log.read_text()
            url = text.split("metrics on ", 1)[1].split("/metrics", 1)[0]
            poll(lambda: http_get(url + "/readyz")[0] == 200, 30, "ready", interval=0.1)
            assert "supervisor ready: accounts main" in log.read_text()
            rpc = _rpc(sock)
            rpc.supervisor.stopProcess(PROGRAM, True)
            info = rpc.supervisor.getProcessInfo(PROGRAM)
            assert (info["statename"], info["exitstatus"]) == ("STOPPED", 0), log.read_text()
        finally:
            with contextlib.suppress(Exception):
                _rpc(sock).supervisor.shutdown()
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(10)
            if daemon.stdout is not None:
                daemon.stdout.close()
    text = log.read_text()
    assert "sup-secret-01234567" not in text and "sup-key-0123456789" not in text
