"""Suite-wide guards: logging on, and no actor or thread left behind by any test."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pykka
import pytest

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

_BACKGROUND = ("pydevd", "pytest_timeout", "ThreadPoolExecutor", "asyncio")


def _ours(t: threading.Thread) -> bool:
    return t.is_alive() and t is not threading.main_thread() and not t.daemon


@pytest.fixture(autouse=True)
def no_leftover_actors_or_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    leftover_actors = pykka.ActorRegistry.get_all()
    pykka.ActorRegistry.stop_all(block=True, timeout=5)
    deadline = time.monotonic() + 5
    while True:
        extra = [t for t in threading.enumerate() if t.ident not in before and _ours(t)]
        if not extra or time.monotonic() > deadline:
            break
        extra[0].join(timeout=max(0.0, deadline - time.monotonic()))
    assert not leftover_actors, f"test left actors running: {leftover_actors[:5]}"
    assert not extra, f"test left threads running: {[t.name for t in extra][:10]}"
