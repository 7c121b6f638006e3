"""A deterministic simulation of the whole core (issue 16, section 2): the real actor shell and
transition on one thread under a seeded scheduler, against a simulated exchange and store with
faults, checked against the exchange's own ledger. ``python -m testkit.dst --seeds N`` runs
seeds; ``--seed S`` replays one exactly (README, "Deterministic simulation")."""
