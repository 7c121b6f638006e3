"""How old a signal may be: expiry (``expires_at``) and age (``Policy.max_signal_age_s``).

Who calls: the transition (refuses a signal too old to act on) and the position actor (an
old signal refused for its age may be a replay decided before: it asks the store). Pure.
"""

from __future__ import annotations

from actors.messages import OpenSignal

__all__ = ["AGE_REFUSALS", "age_refusal"]

#: The refusal reasons :func:`age_refusal` gives.
AGE_REFUSALS = ("too_old", "expired")


def age_refusal(sig: OpenSignal, now: float, max_age: float | None) -> str | None:
    """``expired`` past ``sig.expires_at``, ``too_old`` when ``sig.created_at`` is more than
    ``max_age`` s before ``now`` (``None``: no limit), else None."""
    if sig.expires_at is not None and now > sig.expires_at:
        return "expired"
    if max_age is not None and sig.created_at is not None and now - sig.created_at > max_age:
        return "too_old"
    return None
