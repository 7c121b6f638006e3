"""Test doubles and test infrastructure shared by ``tests/`` and ``bench/``.

* :mod:`testkit.exchange`: :class:`~testkit.exchange.InMemoryExchange`, an in-memory exchange
  port with fault knobs;
* :mod:`testkit.store`: :class:`~testkit.store.InMemoryStore`, an in-memory store port;
* :mod:`testkit.world`: :class:`~testkit.world.World`, a supervisor wired to both and a manual
  clock, with ``settle()`` as the synchronisation primitive;
* :mod:`testkit.pg`: a real PostgreSQL for tests and benchmarks (embedded or ``PS_TEST_DSN``),
  a fresh database per test, private servers to stop and freeze;
* :mod:`testkit.waiting`: :func:`~testkit.waiting.poll`, the one deadline wait.

Above the product: it imports ``actors``, ``infra`` and ``supervision``; the product never
imports it (``tests/layers.py`` checks that). Import the modules, not this package: nothing is
re-exported here, so importing one fake does not start importing PostgreSQL helpers.
"""
