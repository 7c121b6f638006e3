from testkit.world import World, signal


def test_signal_opens_protected_position() -> None:
    with World() as w:
        w.tell(signal())
        w.settle()
        st = w.state()
        assert st.position is not None
        assert st.position.status.value == "active", st.position
