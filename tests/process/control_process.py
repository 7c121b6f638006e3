"""A real supervisor process with its control endpoint on: the helpers the control tests
(``tests/process/test_controls.py``) and the browser test (``tests/browser``) share.

``python -m supervision run`` as a subprocess against a ``sim/`` exchange (real ccxt over
HTTP), a ``sim/`` signal feed (real websocket-client) and a real PostgreSQL, with
``PS_CONTROL_TOKEN`` set. Everything here runs on the test's thread and waits on conditions
with deadlines (:func:`testkit.waiting.poll`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.exchange import SimExchange
from sim.signals import SignalFeed
from testkit.waiting import poll

__all__ = [
    "ROOT",
    "Supervised",
    "free_port",
    "http",
    "process_env",
    "signal",
    "spawn",
    "write_config",
]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free on loopback now (the control address must be known before the start:
    the CLI reads it from the configuration)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(
    path: Path,
    sim: SimExchange,
    feed: SignalFeed,
    control_port: int,
    symbols: tuple[str, ...],
    *,
    refresh_s: float = 1.0,
    extra: str = "",
) -> Path:
    quoted = ", ".join(f'"{s}"' for s in symbols)
    path.write_text(
        f"""
[accounts.main]
rest_url = "{sim.base_url}"
ws_url = "{sim.ws_url}"
symbols = [{quoted}]
credentials = "dummy"
enable_rate_limit = false
timeout_s = 5.0

[signal_policy]
reentry = "allow"
max_signal_age_s = 30.0

[sync]
interval_s = 0.5

[supervisor]
shutdown_grace_s = 3.0

[database]
account_lock_wait = true

[metrics]
address = "127.0.0.1:0"

[control]
address = "127.0.0.1:{control_port}"
refresh_s = {refresh_s}

[feeds]
signal_url = "{feed.url}"

[logging]
level = "INFO"
json = true
{extra}
"""
    )
    return path


def process_env(dsn: str, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
    env.update(PS_DATABASE_DSN=dsn, PYTHONUNBUFFERED="1")
    if token is not None:
        env["PS_CONTROL_TOKEN"] = token
    return env


@dataclass
class Supervised:
    """One running process. ``control``/``metrics``: base URLs read from its log."""

    proc: subprocess.Popen[bytes]
    log: Path
    cfg: Path
    dsn: str
    token: str
    control: str
    metrics: str

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"level": "RAW", "msg": line, "logger": "-"})
        return out

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def spawn(cfg: Path, dsn: str, log: Path, token: str | None = None) -> Supervised:
    """Start the process and wait until it is ready (its log says so); the token is a new
    random one unless given."""
    token = token or secrets.token_hex(24)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervision", "run", "--config", str(cfg)],
            cwd=ROOT,
            env=process_env(dsn, token),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def ready() -> tuple[str, str] | None:
        text = log.read_text()
        assert proc.poll() is None, text[-3000:]
        if "supervisor ready" not in text:
            return None
        control = re.search(r"control endpoint on (http://[0-9.:]+) ", text)
        metrics = re.search(r"metrics on (http://[0-9.:]+)/metrics", text)
        assert control and metrics, text[-3000:]
        return control.group(1), metrics.group(1)

    try:
        control, metrics = poll(ready, 40, "the process ready", interval=0.05)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return Supervised(proc, log, cfg, dsn, token, control, metrics)


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], str]:
    """``(status, headers, body)`` of one request; an HTTP error status included."""
    data = None if body is None else json.dumps(body).encode()
    h = dict(headers or {})
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers.items()), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read().decode()


def signal(sid: str, symbol: str, stop: float, **kw: Any) -> dict[str, Any]:
    """A long signal for account ``main``."""
    return {
        "signal_id": sid,
        "source": kw.pop("source", "sniper"),
        "account": "main",
        "symbol": symbol,
        "side": "long",
        "size": kw.pop("size", 0.01),
        "stop_loss": stop,
        "created_at": time.time(),
        **kw,
    }
