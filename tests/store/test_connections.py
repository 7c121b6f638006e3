"""The store's connection parameters (pure: no server)."""

from __future__ import annotations

from infra.store.connections import KEEPALIVES, connection_kwargs


def test_every_pooled_connection_gets_autocommit_and_the_defaults() -> None:
    kwargs = connection_kwargs("host=db.example dbname=ps")
    assert kwargs["autocommit"] is True
    assert kwargs["application_name"] == "position-supervisor"
    assert kwargs["connect_timeout"] == 2
    assert {k: kwargs[k] for k in KEEPALIVES} == KEEPALIVES
    assert kwargs["keepalives_idle"] == 5 and kwargs["tcp_user_timeout"] == 10_000


def test_what_the_dsn_sets_is_not_overridden() -> None:
    kwargs = connection_kwargs(
        "postgresql://u@db.example/ps?application_name=mine&keepalives_idle=30&connect_timeout=9"
    )
    assert "application_name" not in kwargs
    assert "keepalives_idle" not in kwargs
    assert "connect_timeout" not in kwargs
    assert kwargs["keepalives_interval"] == 2
