"""A configuration file that cannot be used: exit 2, one line, nothing of the file but where.

Each bad file carries a password written by mistake (``SECRET``); neither :func:`load_config`'s
error nor the CLI's output may contain it, nor any traceback. Checked through ``load_config``
and through the real CLI process (``python -m supervision``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.config import ConfigError, load_config

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-in-the-file"
ENV = {"PS_MAIN_API_KEY": "key-0123456789", "PS_MAIN_API_SECRET": "secret-0123456789"}
GOOD = f"""
[accounts.main]
rest_url = "https://fapi.binance.com"
ws_url = "wss://fstream.binance.com"
symbols = ["BTCUSDT"]
# database password (do not commit): {SECRET}
"""


def _invalid_utf8(path: Path) -> None:
    path.write_bytes(GOOD.encode() + b'note = "caf\xe9"\n' + f"# {SECRET}\n".encode())


def _deep_array(path: Path) -> None:
    path.write_text(GOOD + "x = " + "[" * 5000 + "]" * 5000 + "\n")


def _deep_inline_table(path: Path) -> None:
    path.write_text(GOOD + "x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n")


def _deep_dotted_keys(path: Path) -> None:  # tomllib builds these without recursion
    path.write_text(GOOD + "[" + ".".join(["t"] * 20000) + "]\n")


def _json(path: Path) -> None:
    path.write_text('{"database": {"password": "' + SECRET + '"}}\n')


def _quoting_toml_error(path: Path) -> None:
    # tomllib's own message would be "Cannot declare ('hunter2-in-the-file',) twice".
    path.write_text(f'[accounts.main]\n["{SECRET}"]\n["{SECRET}"]\n')


def _control_character(path: Path) -> None:
    # tomllib's own message would quote the character.
    path.write_text(f'password_hint = "{SECRET}\x01"\n')


def _binary(path: Path) -> None:
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + SECRET.encode() + bytes(range(256)))


def _huge(path: Path) -> None:
    with path.open("w") as f:
        f.write(GOOD)
        line = f"# {SECRET} " + "x" * 100 + "\n"
        for _ in range(2 * 1024 * 1024 // len(line) + 1):
            f.write(line)


def _huge_integer(path: Path) -> None:
    path.write_text(GOOD + "x = 1" + "0" * 5000 + "\n")


def _directory(path: Path) -> None:
    path.mkdir()


def _missing(path: Path) -> None:
    pass


def _below_a_file(path: Path) -> None:
    path.parent.write_text(SECRET)  # .../file is a file: .../file/c.toml cannot exist


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "invalid_utf8": (_invalid_utf8, "not valid UTF-8 at line 7, column 12 (byte "),
    "deep_array": (_deep_array, "not valid TOML: nested too deeply at line 7, column 69"),
    "deep_inline_table": (_deep_inline_table, "not valid TOML: nested too deeply at line 7"),
    "deep_dotted_keys": (_deep_dotted_keys, "t: unknown key"),
    "json": (_json, "not valid TOML at line 1, column 1: Invalid statement"),
    "quoting_toml_error": (_quoting_toml_error, "not valid TOML at line 3, column "),
    "control_character": (_control_character, "not valid TOML at line 1, column "),
    "binary": (_binary, "not valid UTF-8 at line 2, column 118 (byte 155)"),
    "huge": (_huge, "too large (over 1048576 bytes)"),
    "huge_integer": (_huge_integer, "not valid TOML: a value out of range"),
    "directory": (_directory, "cannot read: Is a directory"),
    "missing": (_missing, "cannot read: No such file or directory"),
    "below_a_file": (_below_a_file, "cannot read: Not a directory"),
}


def _path(tmp_path: Path, case: str) -> Path:
    path = tmp_path / ("file/c.toml" if case == "below_a_file" else "c.toml")
    CASES[case][0](path)
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_load_config_names_the_problem_and_quotes_nothing(tmp_path: Path, case: str) -> None:
    path = _path(tmp_path, case)
    with pytest.raises(ConfigError) as e:
        load_config(path, ENV)
    msg = str(e.value)
    where = "" if case == "deep_dotted_keys" else f"{path}: "
    assert msg.startswith(where + CASES[case][1]), msg
    assert SECRET not in msg and "\n" not in msg and len(msg) < 300
    # No chained exception (a UnicodeDecodeError holds the whole file) for a traceback to show.
    assert e.value.__cause__ is None
    assert e.value.__context__ is None or e.value.__suppress_context__


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PS_")}
    return subprocess.run(
        [sys.executable, "-m", "supervision", *args],
        cwd=ROOT,
        env={**base, **ENV},
        capture_output=True,
        text=True,
        errors="replace",
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_cli_exits_2_with_one_line(tmp_path: Path, case: str, command: str) -> None:
    path = _path(tmp_path, case)
    r = _cli(command, "--config", str(path))
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("configuration error: ") and CASES[case][1] in lines[0], lines
    assert SECRET not in r.stderr and "Traceback" not in r.stderr


def test_a_file_that_fails_to_read() -> None:
    # /proc/self/mem opens but fails to read (EIO), even for root: the read-time error path.
    r = _cli("check", "--config", "/proc/self/mem")
    assert r.returncode == 2 and r.stderr.splitlines() == [
        "configuration error: /proc/self/mem: cannot read: Input/output error"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file without read permission")
def test_a_file_without_read_permission(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    path.chmod(0)
    r = _cli("check", "--config", str(path))
    assert r.returncode == 2 and r.stderr.splitlines() == [
        f"configuration error: {path}: cannot read: Permission denied"
    ]


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert list(load_config(path, ENV).accounts) == ["main"]
