"""The demo: the supervisor against the ``sim/`` exchange and signal feed on one machine.

``python -m demo`` (``make run``) runs it (:mod:`demo.__main__`); :func:`run_demo` is the same
from Python. A peer of ``sim/`` and ``bench/`` above the product: it imports ``sim``,
``supervision``, ``infra`` and ``actors``; the product never imports it (the layering test,
``tests/layers.py``, checks that), so the installed product does not ship the simulator.
"""

from demo.run import render_view, run_demo

__all__ = ["render_view", "run_demo"]
