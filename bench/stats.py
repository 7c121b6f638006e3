"""Percentiles, spreads over repetitions, verdicts: how every figure is summarised."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Rep", "Spread", "Target", "pct", "spread", "summarise"]


def pct(xs: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank on the sorted values); NaN for no values."""
    if not xs:
        return math.nan
    s = sorted(xs)
    i = min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))
    return s[i]


@dataclass(frozen=True)
class Spread:
    """min / median / max of one number over the repetitions."""

    min: float
    median: float
    max: float
    reps: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {"min": self.min, "median": self.median, "max": self.max, "reps": list(self.reps)}

    def text(self, fmt: str = ".3g") -> str:
        return f"{self.median:{fmt}} ({self.min:{fmt}}..{self.max:{fmt}})"


def spread(values: Sequence[float]) -> Spread | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None
    return Spread(min(vals), statistics.median(vals), max(vals), tuple(values))


@dataclass
class Rep:
    """One repetition of a figure: the product's numbers, the baseline's (measured in the
    same run), the figure's ``value`` (what the target applies to) and notes."""

    value: float | None
    measured: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A fixed target: ``op`` ``"<="`` or ``">="`` ``bound`` (text as in the issue)."""

    text: str
    op: str
    bound: float

    def met(self, value: float) -> bool:
        return value <= self.bound if self.op == "<=" else value >= self.bound


def summarise(
    key: str,
    title: str,
    target: Target,
    reps: Sequence[Rep],
    *,
    main: str,
    base: str | None,
    unit: str,
    also: Callable[[Sequence[Rep]], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The results.json entry of one figure.

    ``main``/``base``: the names in ``measured``/``baseline`` that the overhead
    (``main - base``) and the ratio (``main / base``) are computed from, per repetition.
    The verdict is on the median of ``value`` over the repetitions; every repetition's value
    is kept.
    """
    values = [r.value for r in reps if r.value is not None]
    out: dict[str, Any] = {"figure": title, "target": target.text, "unit": unit}
    sp = spread(values)
    if sp is None:
        out.update({"value": None, "verdict": "not measured"})
    else:
        out.update(
            {
                "value": sp.median,
                "spread": sp.to_json(),
                "verdict": "met" if target.met(sp.median) else "missed",
                "every_rep_met": all(target.met(v) for v in values),
            }
        )
    names = sorted({k for r in reps for k in r.measured})
    out["measured"] = {
        k: s.to_json() for k in names if (s := spread([r.measured.get(k, math.nan) for r in reps]))
    }
    bnames = sorted({k for r in reps for k in r.baseline})
    out["baseline"] = {
        k: s.to_json() for k in bnames if (s := spread([r.baseline.get(k, math.nan) for r in reps]))
    }
    if base is not None:
        ov = [r.measured.get(main, math.nan) - r.baseline.get(base, math.nan) for r in reps]
        ra = [
            r.measured.get(main, math.nan) / r.baseline[base] if r.baseline.get(base) else math.nan
            for r in reps
        ]
        if (s := spread(ov)) is not None:
            out["overhead"] = {"of": f"{main} - {base}", **s.to_json()}
        if (s := spread(ra)) is not None:
            out["ratio"] = {"of": f"{main} / {base}", **s.to_json()}
    out["reps"] = len(reps)
    out["notes"] = [r.notes for r in reps]
    if also is not None:
        out.update(also(reps))
    return out
