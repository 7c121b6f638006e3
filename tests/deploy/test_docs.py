"""What deploy/README.md, README.md and example.toml say is what the code does.

* Every configuration key of the README's table is one the parser reads, and every key the
  parser reads is in the table (the parser is instrumented: it records each key it looks up).
* Every reason deploy/README.md says a signal is "refused" with is a reason of
  :mod:`actors.reasons`; the reason named for ``max_signal_age_s`` is the one the actor gives.
* Every reason of :data:`actors.reasons.REASONS` is in README.md's reason table.
* ``database.account_lock_wait``: the README and example.toml say the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.reasons import FAMILIES, REASONS, known
from infra.config import load_config, parse_config
from infra.config.table import Table
from tests.deploy.tools import DEPLOY, ROOT

pytestmark = pytest.mark.timeout(30)

DEPLOY_README = DEPLOY / "README.md"
README = ROOT / "README.md"


def _config_table(text: str) -> list[str]:
    """The first column of the configuration table, expanded (``a.b`` / ``c`` is ``a.b`` and
    ``a.c``)."""
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 5)]
    keys: list[str] = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        names = re.findall(r"`([^`]+)`", first)
        base = names[0]
        keys.append(base)
        prefix = base.rsplit(".", 1)[0] + "." if "." in base else ""
        keys += [n if "." in n else prefix + n for n in names[1:]]
    return keys


@pytest.fixture
def keys_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Every key the parser looks up, as ``section.key`` paths."""
    seen: set[str] = set()
    get = Table._get

    def _get(self: Any, key: str) -> Any:
        seen.add(self.at(key))
        return get(self, key)

    monkeypatch.setattr(Table, "_get", _get)
    yield seen


def _normalise(key: str) -> str:
    return re.sub(r"^accounts\.main\b", "accounts.<name>", key)


def test_every_config_key_is_documented_and_every_documented_key_exists(
    keys_read: set[str],
) -> None:
    doc = {
        "accounts": {
            "main": {
                "rest_url": "http://127.0.0.1:1",
                "ws_url": "ws://127.0.0.1:1",
                "symbols": ["BTCUSDT"],
                "credentials": "dummy",
                "risk": {"max_notional": 10.0},
            }
        },
        "feeds": {"signal_url": "ws://127.0.0.1:2/signals"},
    }
    parse_config(doc, {})
    read = {_normalise(k) for k in keys_read}
    tables = {k for k in read if any(o.startswith(k + ".") for o in read)}
    leaves = read - tables
    documented = set(_config_table(DEPLOY_README.read_text()))
    per_account_risk = {k for k in leaves if k.startswith("accounts.<name>.risk.")}
    assert "accounts.<name>.risk.*" in documented  # one row covers the overrides
    assert {k.replace("accounts.<name>.", "") for k in per_account_risk} <= documented
    missing = sorted(leaves - per_account_risk - documented)
    assert not missing, f"keys the code reads that deploy/README.md does not document: {missing}"
    unknown = sorted(
        k for k in documented - leaves - tables if k not in ("accounts.<name>.risk.*",)
    )
    assert not unknown, f"documented keys the code does not read: {unknown}"


def test_reasons_named_as_refusals_are_the_codes() -> None:
    """``refused `x` `` / ``refused as `x` `` in deploy/README.md and example.toml name a
    reason of actors/reasons.py (the old table said ``expired`` for ``max_signal_age_s``).
    README.md's reasons are its table's (the next test)."""
    for path in (DEPLOY_README, DEPLOY / "example.toml"):
        text = path.read_text()
        named = re.findall(r"refused (?:as )?`([a-z_]+:?[a-z_<>…]*)`", text)
        named += re.findall(r"refused (?:as )?([a-z]+_[a-z_]+)\b", text)  # unquoted: too_old
        assert named or path.suffix == ".toml", f"{path.name}: no refusal named"
        for reason in named:
            assert known(re.sub(r"<.*|…", "x", reason)), f"{path.name}: refused {reason!r}"


def test_max_signal_age_reason_is_the_actors() -> None:
    """The configuration table names the reason the actor gives for an old signal."""
    from dataclasses import replace

    from actors.messages import OpenSignal
    from actors.model import Key, Side
    from actors.state import Policy, SymbolState
    from actors.transition import Context, transition

    row = next(
        line
        for line in DEPLOY_README.read_text().splitlines()
        if line.startswith("| `signal_policy.max_signal_age_s`")
    )
    (reason,) = re.findall(r"refused `([a-z_]+)`", row)
    assert "max_signal_age_s" in REASONS[reason].meaning
    key = Key("main", "BTCUSDT")
    sig = OpenSignal(key, "old-1", "sniper", Side.LONG, 0.01, 90.0, created_at=1000.0)
    policy = replace(Policy(), max_signal_age_s=30.0)
    t = transition(SymbolState(key=key), sig, Context(2000.0, policy, 1))
    assert t.signal is not None and t.signal.reason == reason


def _reason_table(text: str) -> str | None:
    """README.md's refusal-reason table (header naming reason and retry), if there is one."""
    for m in re.finditer(r"^\|[^\n]*\breason\b[^\n]*\bretry\b[^\n]*\|\n\|[-| ]+\|\n", text, re.M):
        rest = text[m.end() :]
        end = re.search(r"^(?!\|)", rest, re.M)
        return m.group(0) + rest[: end.start() if end else None]
    return None


def test_every_reason_is_in_the_readme_table() -> None:
    table = _reason_table(README.read_text())
    if table is None:
        pytest.skip(
            "README.md has no refusal-reason table (| reason | outcome | retry | meaning |) "
            "yet: another engineer is adding it; this test checks it once it lands"
        )
    for name in REASONS:
        assert f"`{name}`" in table, f"{name} missing from README.md's reason table"
    for prefix in FAMILIES:
        assert f"`{prefix}" in table, f"{prefix}<…> missing from README.md's reason table"


def test_account_lock_wait_agrees() -> None:
    example = load_config(DEPLOY / "example.toml", require_credentials=False)
    text = DEPLOY_README.read_text()
    section = text[text.index("## supervisord") :]
    section = section[: section.index("\n## ", 5)]
    assert "`database.account_lock_wait = true`" in section
    assert "`example.toml` does" in section
    assert example.database.account_lock_wait is True
    assert "account_lock_wait = false" not in (DEPLOY / "example.toml").read_text()


def test_reason_table_helper_finds_a_table(tmp_path: Path) -> None:
    text = (
        "x\n\n| reason | outcome | retry | meaning |\n|---|---|---|---|\n| `a` | r | no | m |\n\nz"
    )
    table = _reason_table(text)
    assert table is not None and "`a`" in table and "z" not in table
    assert _reason_table("| reason | meaning |\n|---|---|\n| `a` | m |\n") is None
