"""The send queue: bounded, refusals counted, a frame whose write fails kept first."""

from __future__ import annotations

import pytest

from infra.feeds.outbox import Outbox


def test_a_full_outbox_refuses_and_counts() -> None:
    box = Outbox(2)
    assert [box.offer("a"), box.offer("b"), box.offer("c")] == [True, True, False]
    assert box.refused == 1 and list(box.frames) == ["a", "b"]


def test_a_failed_write_keeps_the_frame_first_for_the_next_connection() -> None:
    box = Outbox(10)
    for p in ("a", "b", "c"):
        box.offer(p)
    sent: list[str] = []

    def flaky(payload: str) -> None:
        if payload == "b":
            raise OSError("broken pipe")
        sent.append(payload)

    with pytest.raises(OSError):
        box.write(flaky)
    assert sent == ["a"] and list(box.frames) == ["b", "c"]
    box.write(sent.append)
    assert sent == ["a", "b", "c"] and not box.frames
